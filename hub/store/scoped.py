"""A repository that shows a principal only what it may see: an institution-bound one only its
institutions' patient data, and every principal but administrators only the Subscriptions it owns.

Searches get the institution criterion added in SQL (so counts and pages stay right);
point reads, includes and instance history are filtered by the resource's tag. Writes
over a resource of another institution are refused with 403, not a misleading conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime

from hub.errors import Forbidden, VersionConflict
from hub.fhir.access import OWNED_TYPES, Access, scoped_criteria
from hub.fhir.criteria import IdCriterion
from hub.fhir.repository import HistorySpec, IndexValues, SearchSpec, StoredResource, VersionWrite
from hub.fhir.resource_types import resource_types
from hub.store.repository import SqlRepository


class ScopedRepository:
    """:class:`hub.fhir.repository.FhirRepository` limited to what ``access`` sees."""

    def __init__(self, inner: SqlRepository, access: Access) -> None:
        self.inner = inner
        self.access = access

    def _spec(self, spec: SearchSpec) -> SearchSpec:
        criteria = scoped_criteria(spec.criteria, self.access)
        if self.access.bound(spec.resource_type, spec.types):
            criteria = (*criteria, self.access.institution_criterion())
        if self.access.owns_only(spec.resource_type):
            criteria = (*criteria, self.access.owner_criterion())
        types = spec.types
        if spec.resource_type is None and any(self.access.owns_only(t) for t in OWNED_TYPES):
            # across types, others' owned resources could not be told apart: they are left out
            types = tuple(t for t in (types or sorted(resource_types())) if not self.access.owns_only(t))
            if not types:  # only owned types were asked for: nothing (no types would mean every type)
                return replace(spec, criteria=(*criteria, IdCriterion(())), types=spec.types)
        return replace(spec, criteria=criteria, types=types)

    def _seen(self, stored: StoredResource | None) -> StoredResource | None:
        return stored if stored is not None and self.access.sees(stored) else None

    # -- reads ---------------------------------------------------------------

    def read_current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        """The current version, or None when it does not exist or belongs to another institution."""
        return self._seen(self.inner.read_current(resource_type, resource_id))

    def read_current_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        """The visible current versions of ``keys``."""
        return {k: v for k, v in self.inner.read_current_many(keys).items() if self.access.sees(v)}

    def read_version(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        """One visible version."""
        return self._seen(self.inner.read_version(resource_type, resource_id, version_id))

    def version_at(self, resource_type: str, resource_id: str, instant: datetime) -> StoredResource | None:
        """The version current at ``instant``, if visible."""
        return self._seen(self.inner.version_at(resource_type, resource_id, instant))

    def search(self, spec: SearchSpec) -> list[StoredResource]:
        """Matches within the principal's institutions."""
        return self.inner.search(self._spec(spec))

    def search_counted(self, spec: SearchSpec) -> tuple[list[StoredResource], int]:
        """One page and the count, within the principal's institutions."""
        return self.inner.search_counted(self._spec(spec))

    def count(self, spec: SearchSpec) -> int:
        """The count within the principal's institutions."""
        return self.inner.count(self._spec(spec))

    def referenced(
        self, sources: Sequence[int], params: Sequence[tuple[str, str | None, str | None]], limit: int
    ) -> list[StoredResource]:
        """Visible resources the sources refer to (``_include``)."""
        return [r for r in self.inner.referenced(sources, params, limit) if self.access.sees(r)]

    def referring(
        self, targets: Sequence[tuple[str, str]], source_type: str, param: str | None, limit: int
    ) -> list[StoredResource]:
        """Visible resources referring to the targets (``_revinclude``)."""
        return [r for r in self.inner.referring(targets, source_type, param, limit) if self.access.sees(r)]

    def history(self, spec: HistorySpec) -> list[StoredResource]:
        """Instance history only (across resources it could not be counted right)."""
        if spec.resource_id is None and self.access.bound(spec.resource_type):
            raise Forbidden("History across resources is not available to institution-bound clients; "
                            "search with _lastUpdated instead")
        if spec.resource_id is None and (self.access.owns_only(spec.resource_type) or (
                spec.resource_type is None and not self.access.manages_all)):
            return [v for v in self.inner.history(spec) if v.resource_type not in OWNED_TYPES or self.access.sees(v)]
        return [v for v in self.inner.history(spec) if v.deleted or self.access.sees(v)]  # its own deletions

    def count_history(self, spec: HistorySpec) -> int:
        """The number of versions (instance history)."""
        return self.inner.count_history(spec)

    def type_stamp(self, resource_type: str) -> tuple[int, datetime | None]:
        """Change stamp of a type (no data)."""
        return self.inner.type_stamp(resource_type)

    def latest_key(self) -> int:
        """The newest storage key (no data)."""
        return self.inner.latest_key()

    def current_batch(self, resource_type: str | None, after: int, limit: int) -> list[StoredResource]:
        """The visible resources of a batch (e.g. the stored SearchParameters)."""
        return [r for r in self.inner.current_batch(resource_type, after, limit) if self.access.sees(r)]

    # -- writes --------------------------------------------------------------

    def write(self, write: VersionWrite) -> None:
        """Store a version; a create over another institution's resource is 403."""
        try:
            self.inner.write(write)
        except VersionConflict:
            self._refuse_foreign(write)
            raise

    def write_many(self, writes: Sequence[VersionWrite]) -> None:
        """Store many versions (same rule as :meth:`write`)."""
        try:
            self.inner.write_many(writes)
        except VersionConflict:
            for write in writes:
                self._refuse_foreign(write)
            raise

    def _refuse_foreign(self, write: VersionWrite) -> None:
        new = write.new
        existing = self.inner.read_current(new.resource_type, new.id)
        if existing is not None and not self.access.sees(existing):
            raise Forbidden(f"{new.resource_type}/{new.id} belongs to another institution or client, or was deleted")

    def hidden(self, resource_type: str, resource_id: str) -> bool:
        """The resource exists but belongs to an institution out of reach."""
        existing = self.inner.read_current(resource_type, resource_id)
        return existing is not None and not self.access.sees(existing)

    def replace_index(self, items: Sequence[tuple[StoredResource, IndexValues]]) -> None:
        """Reindexing is the hub's own job."""
        raise Forbidden("Reindexing needs unrestricted access")

    def lock(self, keys: Sequence[str]) -> None:
        """Serialize conditional writes."""
        self.inner.lock(keys)

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested scope (batch entries)."""
        return self.inner.savepoint()
