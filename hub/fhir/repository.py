"""The storage contract the FHIR layer works against (implemented in ``hub.store``).

The FHIR layer decides meaning (ids, versions, meta, validation, index values); a
repository only stores, compares-and-swaps versions and finds rows. Every method runs
inside the unit of work its caller opened; a repository never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredResource:
    """One version of a resource as stored: its JSON bytes are served as they are."""

    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    #: The resource JSON (UTF-8) exactly as stored; ``None`` for a deletion.
    content: bytes | None
    #: The interaction that made this version: POST, PUT, PATCH or DELETE.
    method: str = "PUT"


@dataclass(frozen=True, slots=True)
class TokenIndexValue:
    """A token search value of a resource (``system`` is ``""`` when it has none)."""

    param: str
    system: str
    value: str


@dataclass(frozen=True, slots=True)
class IndexValues:
    """Every search value extracted from one resource version."""

    tokens: tuple[TokenIndexValue, ...] = ()


@dataclass(frozen=True, slots=True)
class VersionWrite:
    """Write ``new`` as the next version; ``previous_version`` 0 means create.

    The store raises :class:`hub.errors.VersionConflict` when the current version is no
    longer ``previous_version`` (or the resource exists when creating).
    """

    new: StoredResource
    previous_version: int
    index: IndexValues = field(default_factory=IndexValues)
    #: False when the id was assigned by the server and cannot collide (bulk fast path).
    may_conflict: bool = True


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """Match resources having any of ``values`` for token parameter ``param``.

    Each value is ``(system, code)``: system ``None`` = any system, ``""`` = no system;
    code ``None`` = any code of that system.
    """

    param: str
    values: tuple[tuple[str | None, str | None], ...]


@dataclass(frozen=True, slots=True)
class IdCriterion:
    """Match resources whose id is one of ``ids``."""

    ids: tuple[str, ...]


Criterion = TokenCriterion | IdCriterion


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """A search the store runs: all criteria must match (AND); values within one OR."""

    resource_type: str
    criteria: tuple[Criterion, ...] = ()
    offset: int = 0
    count: int = 20


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """A history query: system (no type), type (no id) or instance level."""

    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    offset: int = 0
    count: int = 20


class FhirRepository(Protocol):
    """Storage of FHIR resources with versions, used inside one unit of work."""

    def read_current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version (a deletion too), or None if the id never existed."""

    def read_version(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        """One version from the history, or None."""

    def write(self, write: VersionWrite) -> None:
        """Store one new version and its index values (compare-and-swap on the version)."""

    def write_many(self, writes: Sequence[VersionWrite]) -> None:
        """Store many new versions at once (same rules as :meth:`write`)."""

    def search(self, spec: SearchSpec) -> list[StoredResource]:
        """Current, non-deleted resources matching ``spec``, one page."""

    def count(self, spec: SearchSpec) -> int:
        """How many current, non-deleted resources match ``spec``."""

    def history(self, spec: HistorySpec) -> list[StoredResource]:
        """Versions newest first, one page."""

    def count_history(self, spec: HistorySpec) -> int:
        """How many versions ``spec`` covers."""

    def lock(self, keys: Sequence[str]) -> None:
        """Serialize units of work that lock any of the same ``keys`` until they end (deadlock-free)."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope rolled back alone if its block raises (batch entries)."""

