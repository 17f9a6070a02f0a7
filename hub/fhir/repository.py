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

from hub.fhir.criteria import Criterion, SortKey


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
    #: The store's key of the resource (search results only): a paging cursor.
    pk: int = 0


@dataclass(frozen=True, slots=True)
class TokenIndexValue:
    """A token search value of a resource (``system`` is ``""`` when it has none)."""

    param: str
    system: str
    value: str


@dataclass(frozen=True, slots=True)
class StringIndexValue:
    """A string search value: normalized (for starts-with and contains) and exact."""

    param: str
    normalized: str
    exact: str


@dataclass(frozen=True, slots=True)
class DateIndexValue:
    """A date search value: the microseconds (since 1970, UTC) its first and last instants cover."""

    param: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberIndexValue:
    """A number or quantity search value (a range, for Range values); quantities carry system and code."""

    param: str
    low: float
    high: float
    system: str = ""
    code: str = ""


@dataclass(frozen=True, slots=True)
class UriIndexValue:
    """A uri search value."""

    param: str
    value: str


@dataclass(frozen=True, slots=True)
class ReferenceIndexValue:
    """A reference: a local ``target_type``/``target_id``, or an absolute or canonical ``url``."""

    param: str
    target_type: str
    target_id: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class IndexValues:
    """Every search value extracted from one resource version."""

    tokens: tuple[TokenIndexValue, ...] = ()
    strings: tuple[StringIndexValue, ...] = ()
    dates: tuple[DateIndexValue, ...] = ()
    numbers: tuple[NumberIndexValue, ...] = ()
    uris: tuple[UriIndexValue, ...] = ()
    references: tuple[ReferenceIndexValue, ...] = ()


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
class SearchSpec:
    """A search the store runs: all criteria must match (AND).

    Results come in ``sort`` order, then by storage order. Paging is either keyset
    (``after``/``before`` a storage key, default order only) or ``offset`` within a
    snapshot (``bound``: no resource stored after the first page), so pages stay
    right while new resources arrive.
    """

    #: None searches several types (``types``; empty = every type).
    resource_type: str | None
    criteria: tuple[Criterion, ...] = ()
    offset: int = 0
    count: int = 20
    sort: tuple[SortKey, ...] = ()
    after: int | None = None
    before: int | None = None
    bound: int | None = None
    types: tuple[str, ...] = ()


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

    def read_current_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        """The current versions (deletions too) of those of ``keys`` (type, id) that exist."""

    def read_version(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        """One version from the history, or None."""

    def version_at(self, resource_type: str, resource_id: str, instant: datetime) -> StoredResource | None:
        """The version that was current at ``instant`` (a deletion too), or None if there was none yet."""

    def write(self, write: VersionWrite) -> None:
        """Store one new version and its index values (compare-and-swap on the version)."""

    def write_many(self, writes: Sequence[VersionWrite]) -> None:
        """Store many new versions at once (same rules as :meth:`write`)."""

    def search(self, spec: SearchSpec) -> list[StoredResource]:
        """Current, non-deleted resources matching ``spec``, one page."""

    def search_counted(self, spec: SearchSpec) -> tuple[list[StoredResource], int]:
        """One page and the number of all matches (in one pass over the index where it can)."""

    def count(self, spec: SearchSpec) -> int:
        """How many current, non-deleted resources match ``spec``."""

    def type_stamp(self, resource_type: str) -> tuple[int, datetime | None]:
        """A stamp that changes with every committed write of a type: how many versions of it exist (deletions
        included) and when one last changed."""

    def latest_key(self) -> int:
        """The key of the most recently stored resource (a snapshot bound for paging)."""

    def referenced(
        self, sources: Sequence[int], params: Sequence[tuple[str, str | None, str | None]], limit: int
    ) -> list[StoredResource]:
        """Current resources that the resources keyed ``sources`` refer to.

        Each of ``params`` is ``(source_type or "*", reference parameter or None for any,
        target type or None for any)``.
        """

    def referring(
        self, targets: Sequence[tuple[str, str]], source_type: str, param: str | None, limit: int
    ) -> list[StoredResource]:
        """Current ``source_type`` resources (``*``: any) referring to ``targets`` through ``param`` (None: any)."""

    def current_batch(self, resource_type: str | None, after: int, limit: int) -> list[StoredResource]:
        """Up to ``limit`` current resources with keys above ``after``, in key order (reindexing)."""

    def replace_index(self, items: Sequence[tuple[StoredResource, IndexValues]]) -> None:
        """Replace the index rows of these resources (keyed by ``pk``) with new values."""

    def history(self, spec: HistorySpec) -> list[StoredResource]:
        """Versions newest first, one page."""

    def count_history(self, spec: HistorySpec) -> int:
        """How many versions ``spec`` covers."""

    def hidden(self, resource_type: str, resource_id: str) -> bool:
        """True when the resource exists but this repository's principal may not see it."""

    def lock(self, keys: Sequence[str]) -> None:
        """Serialize units of work that lock any of the same ``keys`` until they end (deadlock-free)."""

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope rolled back alone if its block raises (batch entries)."""

