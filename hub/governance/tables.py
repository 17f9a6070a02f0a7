"""Mapping tables as the governance staff and hospital IT change them: load, export, edit, check.

Each change writes a new version of the scope's ConceptMap (guarded by its FHIR version,
so two concurrent changes cannot both win), then the table conflicts are checked again
and the stored resources carrying a changed code are re-normalized.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hub.coding.mapping_index import mapping_table
from hub.coding.mapping_tables import (
    SCOPE_SYSTEM,
    MappingRow,
    concept_map_id,
    from_concept_map,
    local_system,
    require_scope,
    scope_of,
    to_concept_map,
)
from hub.coding.table_checks import TABLE_KINDS, check_tables
from hub.coding.terminology import Terminology, TerminologyCache
from hub.errors import NotFound
from hub.fhir.instants import now_utc
from hub.fhir.service import FhirService
from hub.governance.renormalize import Renormalized, expand_codes, renormalize, sources_of_scope
from hub.store.conflicts import Observed
from hub.store.database import Database

#: Conflicts a table change may settle for the codes it changed.
SETTLED_BY_TABLE = ("unmapped", "ambiguous")


@dataclass
class TableChange:
    """The outcome of a table change."""

    scope: str
    version: int
    changed_codes: list[tuple[str, str]] = field(default_factory=list)
    renormalized: Renormalized | None = None
    conflicts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"scope": self.scope, "version": self.version, "changed_codes": len(self.changed_codes),
                "renormalized": self.renormalized.as_dict() if self.renormalized else None,
                "conflicts": self.conflicts}


def _targets(rows: Iterable[MappingRow]) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    out: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for row in rows:
        out.setdefault(row.key, set())
        if row.status == "active":
            out[row.key].add((row.target_system, row.target_code, row.equivalence, row.target_unit))
    return out


def changed_codes(old: list[MappingRow], new: list[MappingRow]) -> list[tuple[str, str]]:
    """The (local system, code) pairs whose active targets differ between two versions of a table."""
    before, after = _targets(old), _targets(new)
    return sorted(k for k in before.keys() | after.keys() if before.get(k, set()) != after.get(k, set()))


def write_table(service: FhirService, cache: TerminologyCache, scope: str,
                edit: Callable[[list[MappingRow]], list[MappingRow]]) -> TableChange:
    """Apply ``edit`` to the scope's rows and store the result as the next version (inside the caller's unit).

    The table is locked first, so concurrent changes of one table apply one after the other, each on
    top of the last (never two edits of the same version, one lost)."""
    lock_tables(service, [require_scope(scope)])
    stored = service.repository.read_current("ConceptMap", concept_map_id(scope))
    existing = mapping_table(Terminology(service, cache), scope)
    old = from_concept_map(existing) if existing else []
    new = edit(list(old))
    version = int(existing.get("version", "0")) if existing else 0
    if existing is not None and sorted(map(repr, old)) == sorted(map(repr, new)):
        return TableChange(scope, version)
    version += 1
    concept_map = to_concept_map(scope, new, version, now_utc().isoformat())
    if_match = f'W/"{stored.version_id}"' if stored is not None and not stored.deleted else None
    service.update("ConceptMap", concept_map["id"], concept_map, if_match=if_match)
    return TableChange(scope, version, changed_codes(old, new))


def lock_tables(service: FhirService, scopes: Iterable[str]) -> None:
    """Hold the tables of ``scopes`` until the unit of work ends (all in one statement: no deadlock)."""
    service.repository.lock([f"mapping-table:{scope}" for scope in scopes])


def follow_change(database: Database, cache: TerminologyCache, change: TableChange, *, actor: str,
                  reason: str) -> TableChange:
    """After a committed table change: check the tables, settle conflicts, re-normalize stored data."""
    change.conflicts = sync_table_conflicts(database, cache)
    if change.changed_codes:
        settled = [(local_system(source.source_id, element), code)
                   for source, element, code in expand_codes(database, change.changed_codes)]
        with database.conflicts(write=True) as conflicts:
            change.conflicts["settled"] = conflicts.resolve_codes(SETTLED_BY_TABLE, settled)
        change.renormalized = renormalize(database, cache, change.changed_codes, actor=actor, reason=reason)
    return change


def load_table(database: Database, cache: TerminologyCache, scope: str, rows: list[MappingRow], *,
               actor: str) -> TableChange:
    """Replace a scope's table with ``rows`` (a CSV load): a new version, unless nothing changed."""
    with database.fhir_service(write=True) as service:
        change = write_table(service, cache, scope, lambda _old: rows)
    return follow_change(database, cache, change, actor=actor,
                         reason=f"映射表 {scope} 第 {change.version} 版载入")


def export_table(database: Database, cache: TerminologyCache, scope: str) -> list[MappingRow]:
    """The rows of a scope's current table."""
    with database.fhir_service(write=False) as service:
        table = mapping_table(Terminology(service, cache), require_scope(scope))
    if table is None:
        raise NotFound(f"No mapping table has been loaded for {scope}")
    return from_concept_map(table)


def renormalize_scope(database: Database, cache: TerminologyCache, scope: str, *, actor: str) -> Renormalized:
    """Normalize again every stored resource carrying a code of ``scope``'s table."""
    codes = sorted({row.key for row in export_table(database, cache, scope)})
    return renormalize(database, cache, codes, actor=actor, reason=f"映射表 {scope} 重新标准化")


def all_tables(terminology: Terminology) -> dict[str, list[MappingRow]]:
    """Every scope's current table."""
    tables = {}
    spec = terminology.service.conditional_spec("ConceptMap", f"identifier={SCOPE_SYSTEM}|")
    for stored in terminology.service.find_matches(spec, limit=10_000):
        if stored.content is None:
            continue
        concept_map = terminology.parsed(stored)
        scope = scope_of(concept_map)
        if scope:
            tables[scope] = from_concept_map(concept_map)
    return tables


def sync_table_conflicts(database: Database, cache: TerminologyCache) -> dict[str, int]:
    """Open the conflicts the tables now have, resolve those they no longer have."""
    with database.fhir_service(write=False) as service:
        terminology = Terminology(service, cache)
        found = check_tables(all_tables(terminology), terminology.code_system)
    observed = []
    for conflict in found:
        sources = [s for scope in conflict.scopes for s in sources_of_scope(database, scope)]
        observed.append(Observed(
            conflict.kind, conflict.system, conflict.code, conflict.detail, conflict.element, conflict.display, 0,
            sources=[s.source_id for s in sources],
            institutions=sorted({s.institution for s in sources}), info={**conflict.info, "scopes": conflict.scopes}))
    with database.conflicts(write=True) as conflicts:
        return conflicts.sync(TABLE_KINDS, observed, now_utc())
