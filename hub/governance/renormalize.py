"""Re-normalizing stored resources after a mapping decision: no re-extraction from hospitals.

For each affected local code, the resources carrying it are found by the index (a token
search on the local coding, or the source's resources of the element's types), normalized
again under the tables now in force and written as new versions where they changed. Each
batch of changes is one transaction with a ``Provenance`` naming the mapping versions and
the decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from hub.coding.mapping_index import build_index
from hub.coding.mapping_tables import local_system, source_scopes, split_local
from hub.coding.normalizer import ELEMENTS, MappingNormalizer
from hub.coding.terminology import Terminology, TerminologyCache, escape
from hub.errors import VersionConflict
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.store.database import Database
from hub.store.sources import SourceRecord

BATCH = 500
#: Attempts of a page that a concurrent writer changed under it.
BATCH_ATTEMPTS = 3


@dataclass
class Renormalized:
    """What a re-normalization changed."""

    examined: int = 0
    updated: int = 0
    unchanged: int = 0
    provenance: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"examined": self.examined, "updated": self.updated, "unchanged": self.unchanged,
                "provenance": self.provenance[:20]}


def sources_of_scope(database: Database, scope: str) -> list[SourceRecord]:
    """The sources a scope's table applies to (the source itself, or every source of the profile)."""
    with database.sources(write=False) as store:
        return [s for s in store.all() if s.source_id == scope or s.adapter == scope]


def expand_codes(database: Database, codes: Iterable[tuple[str, str]]) -> list[tuple[SourceRecord, str, str]]:
    """(source, element, code) for each (local system of any scope, code)."""
    out: dict[tuple[str, str, str], tuple[SourceRecord, str, str]] = {}
    for system, code in codes:
        local = split_local(system)
        if local is None:
            continue
        scope, element = local
        for source in sources_of_scope(database, scope):
            out[(source.source_id, element, code)] = (source, element, code)
    return list(out.values())


def _searches(database: Database, codes: Iterable[tuple[str, str]]) -> list[tuple[SourceRecord, str, str]]:
    """(source, resource type, criteria) finding every stored resource that may carry one of ``codes``.

    Indexed elements are found code by code; the others by one scan of the source's resources of the type.
    """
    searches: dict[tuple[str, str, str], tuple[SourceRecord, str, str]] = {}
    for source, element, code in expand_codes(database, codes):
        spec = ELEMENTS.get(element)
        if spec is None:
            continue
        system = local_system(source.source_id, element)
        for resource_type in spec.resource_types:
            criteria = (f"{spec.search_param}={escape(system)}|{escape(code)}" if spec.search_param
                        else f"_source={escape('urn:hub:source:' + source.source_id)}")
            searches[(source.source_id, resource_type, criteria)] = (source, resource_type, criteria)
    return list(searches.values())


def estimate(database: Database, codes: Iterable[tuple[str, str]]) -> int:
    """How many stored resources a re-normalization of ``codes`` would examine."""
    total = 0
    with database.fhir_service(write=False) as service:
        for _source, resource_type, criteria in _searches(database, codes):
            total += service.repository.count(service.conditional_spec(resource_type, criteria))
    return total


def renormalize(database: Database, cache: TerminologyCache, codes: Iterable[tuple[str, str]], *,
                actor: str, reason: str, progress: Callable[[Renormalized], None] | None = None) -> Renormalized:
    """Normalize again every stored resource carrying one of ``codes`` (local system, code)."""
    done = Renormalized()
    normalizers: dict[str, MappingNormalizer] = {}
    for source, resource_type, criteria in _searches(database, codes):
        if source.source_id not in normalizers:
            with database.fhir_service(write=False) as service:
                normalizers[source.source_id] = MappingNormalizer(build_index(
                    Terminology(service, cache), source_scopes(source.source_id, source.adapter)))
        _run(database, normalizers[source.source_id], source, resource_type, criteria, done, actor, reason)
        if progress is not None:
            progress(done)
    return done


def _run(database: Database, normalizer: MappingNormalizer, source: SourceRecord, resource_type: str,
         criteria: str, done: Renormalized, actor: str, reason: str) -> None:
    after: int | None = 0
    while after is not None:
        for attempt in range(BATCH_ATTEMPTS):
            try:
                after = _batch(database, normalizer, source, resource_type, criteria, after, done, actor, reason)
                break
            except VersionConflict:  # an ingest run wrote one of these resources meanwhile: read them again
                if attempt == BATCH_ATTEMPTS - 1:
                    raise


def _batch(database: Database, normalizer: MappingNormalizer, source: SourceRecord, resource_type: str,
           criteria: str, after: int, done: Renormalized, actor: str, reason: str) -> int | None:
    """Normalize one page again in one transaction; the key to continue after (None: the last page)."""
    with database.review_batch() as (service, conflicts):
        spec = replace(service.conditional_spec(resource_type, criteria), count=BATCH, after=after or None)
        page = [s for s in service.repository.search(spec) if s.content is not None]
        if not page:
            return None
        resources = [(resource_type, stored.id, normalizer.normalize(jsonio.loads_stored(stored.content or b"{}")))
                     for stored in page]
        # what is still unanswered (a new unit that does not convert, a retired row…) opens its conflict
        # again; occurrences were counted when the data was ingested
        conflicts.record_findings(normalizer.drain(), source.source_id, source.institution, now_utc(),
                                  add_occurrences=False)
        outcomes = service.upsert_many(resources)
        changed = [(t, i) for (t, i, _r), o in zip(resources, outcomes, strict=True) if o == "updated"]
        if changed:
            current = service.repository.read_current_many(changed)
            targets = [{"reference": f"{t}/{i}/_history/{current[(t, i)].version_id}"} for t, i in changed]
            outcome = service.create("Provenance", _provenance(targets, normalizer.version, actor, reason))
            provenance = outcome.resource.id if outcome.resource is not None else None
        else:
            provenance = None
    done.examined += len(page)
    done.updated += len(changed)
    done.unchanged += len(page) - len(changed)
    if provenance:
        done.provenance.append(provenance)
    return max(s.pk for s in page) if len(page) == BATCH else None


def _provenance(targets: list[dict[str, str]], version: str, actor: str, reason: str) -> dict[str, Any]:
    entities = [{"role": "source", "what": {"identifier": {"system": "urn:hub:mapping-version", "value": part},
                                            "display": f"映射表 {part}"}}
                for part in version.split("+")]
    provenance = {
        "resourceType": "Provenance",
        "target": targets,
        "recorded": now_utc().isoformat(),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "UPDATE", "display": "revise"}], "text": "按新映射重新标准化"},
        "reason": [{"text": reason[:500]}] if reason else None,
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "verifier", "display": "Verifier"}]},
                   "who": {"display": actor[:200]}}],
        "entity": entities,
    }
    return {k: v for k, v in provenance.items() if v is not None}
