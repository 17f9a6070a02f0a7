"""Building a source's :class:`MappingIndex` from the stored tables and terminology.

A source's codes are looked up in its own table first, then in its vendor profile's
(adapter name). Per local code: one active target → that target; an ``unmatched`` row →
no standard code (not flagged); two active targets → ambiguous (flagged, nothing added).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.conceptmaps import NEGATIVE
from hub.coding.mapping_tables import MappingRow, concept_map_id, element_of, from_concept_map
from hub.coding.normalizer import ELEMENTS, MAPPED_EXTENSION, MappingIndex, Target
from hub.coding.terminology import Terminology
from hub.coding.text import fold
from hub.coding.units import UCUM, Units
from hub.fhir import jsonio


def mapping_table(terminology: Terminology, scope: str) -> dict[str, Any] | None:
    """The current mapping ConceptMap of ``scope``, or None."""
    stored = terminology.service.repository.read_current("ConceptMap", concept_map_id(scope))
    if stored is None or stored.deleted or stored.content is None:
        return None
    return jsonio.loads_stored(stored.content)


def row_key(row: MappingRow) -> tuple[str, str]:
    """The index key of a row: (element, code) for local systems, (system, code) otherwise."""
    return element_of(row.source_system), row.source_code


def build_index(terminology: Terminology, scopes: list[str]) -> MappingIndex:
    """The index of a source whose tables are ``scopes`` (most specific first)."""
    units_system = terminology.code_system(UCUM)
    units = Units.from_code_system(units_system) if units_system is not None else None
    systems: dict[str, CodeSystemIndex | None] = {}

    def system(url: str) -> CodeSystemIndex | None:
        if url not in systems:
            systems[url] = terminology.code_system(url)
        return systems[url]

    versions = []
    targets: dict[tuple[str, str], Target] = {}
    for scope in scopes:
        table = mapping_table(terminology, scope)
        if table is None:
            continue
        versions.append(f"{scope}@{table.get('version')}")
        source = f"{table.get('url')}|{table.get('version')}"
        by_key: dict[tuple[str, str], list[MappingRow]] = defaultdict(list)
        for row in from_concept_map(table):
            if row.status == "active":
                by_key[row_key(row)].append(row)
        for key, rows in by_key.items():
            if key not in targets:  # a more specific scope came first
                targets[key] = _target(rows, source, system, units)
    direct = {element: system(spec.target_system) for element, spec in ELEMENTS.items() if spec.target_system}
    return MappingIndex("+".join(versions) or "none", targets,
                        {k: v for k, v in direct.items() if v is not None}, units)


def _target(rows: list[MappingRow], source: str, system: Any, units: Units | None) -> Target:
    positive = [r for r in rows if r.equivalence not in NEGATIVE]
    if not positive:  # unmatched / disjoint: the code has no counterpart (not flagged again)
        return Target(None, rows[0].equivalence, fold(rows[0].source_display))
    distinct = sorted({(r.target_system, r.target_code) for r in positive})
    if len(distinct) > 1:
        return Target(None, "ambiguous", fold(positive[0].source_display),
                      ambiguous=tuple(f"{s}|{c}" for s, c in distinct), table_system=positive[0].source_system)
    row = positive[0]
    index = system(row.target_system)
    concept = index.get(row.target_code) if index is not None else None
    coding: dict[str, Any] = {"extension": [{"url": MAPPED_EXTENSION, "valueUri": source}],
                              "system": row.target_system, "code": row.target_code}
    display = row.target_display or (concept.display if concept is not None else "")
    if display:
        coding["display"] = display
    unit = molar_mass = None
    if row.target_unit and units is not None:
        wanted = row.target_unit
        if wanted == "canonical" and concept is not None:
            wanted = next(iter(concept.values("unit")), "")
        unit = units.resolve(wanted) if wanted and wanted != "canonical" else None
        mass = next(iter(concept.values("molar-mass")), None) if concept is not None else None
        molar_mass = Decimal(str(mass)) if mass is not None else None
    return Target(coding, row.equivalence, fold(row.source_display), unit, molar_mass)
