"""Where code mapping plugs into the pipeline.

A :class:`Normalizer` gets every built resource before it is stored and adds standard
codings next to the local ones; its ``version`` is recorded on every resource
(``meta.tag`` ``urn:hub:mapping-version``). :class:`SourceNormalizers` keeps one source's
normalizer current: before each page it checks (one indexed query) whether any mapping
table or code system changed — in this process or another — and rebuilds it if so.
"""

from __future__ import annotations

from typing import Any, Protocol

from hub.coding.mapping_index import build_index
from hub.coding.mapping_tables import source_scopes
from hub.coding.normalizer import Finding, MappingNormalizer
from hub.coding.terminology import PROCESS_CACHE, Terminology, TerminologyCache
from hub.store.database import Database
from hub.store.sources import SourceRecord


class Normalizer(Protocol):
    """Adds standard codes to a resource built from local codes."""

    #: The version of the mapping tables in force.
    version: str

    def normalize(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource with standard codings added (the original local codings kept)."""

    def drain(self) -> list[Finding]:
        """What the tables could not answer since the last call."""


class SourceNormalizers:
    """The current normalizer of one source, rebuilt when the tables or terminology change."""

    def __init__(self, database: Database, source: SourceRecord, cache: TerminologyCache = PROCESS_CACHE) -> None:
        self.database = database
        self.source = source
        self.cache = cache
        self._stamp: tuple[Any, ...] | None = None
        self._normalizer: MappingNormalizer | None = None

    def current(self) -> MappingNormalizer:
        """The normalizer under the tables in force now."""
        with self.database.fhir_service(write=False) as service:
            repository = service.repository
            stamp = (repository.type_stamp("ConceptMap"), repository.type_stamp("CodeSystem"))
            if self._normalizer is None or stamp != self._stamp:
                self._normalizer = MappingNormalizer(build_index(Terminology(service, self.cache),
                                                                 source_scopes(self.source.source_id,
                                                                               self.source.adapter)))
                self._stamp = stamp
        return self._normalizer
