"""Conflicts found in the mapping tables themselves (after each load or decision).

- ``ambiguous``: one local code with two active targets in a table;
- ``invalid-target``: a target not in the terminology the hub holds, or retired;
- ``inconsistent``: the same local display text mapped to different targets by different scopes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.conceptmaps import NEGATIVE
from hub.coding.mapping_tables import MappingRow, element_of
from hub.coding.text import fold

TABLE_KINDS = ("ambiguous", "invalid-target", "inconsistent")


@dataclass(frozen=True)
class TableConflict:
    """One conflict in the tables, with the scopes it concerns."""

    kind: str
    system: str
    code: str
    detail: str
    element: str
    display: str
    scopes: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)


def check_tables(tables: dict[str, list[MappingRow]],
                 code_system: Callable[[str], CodeSystemIndex | None]) -> list[TableConflict]:
    """Every table conflict among ``tables`` (scope → rows)."""
    found: list[TableConflict] = []
    by_display: dict[tuple[str, str], list[tuple[str, MappingRow]]] = defaultdict(list)
    for scope, rows in tables.items():
        active = [r for r in rows if r.status == "active"]
        targets: dict[tuple[str, str], list[MappingRow]] = defaultdict(list)
        for row in active:
            if row.equivalence not in NEGATIVE:
                targets[row.key].append(row)
                if row.source_display:
                    by_display[(element_of(row.source_system), fold(row.source_display))].append((scope, row))
        for (system, code), rows_of_code in targets.items():
            distinct = sorted({f"{r.target_system}|{r.target_code}" for r in rows_of_code})
            if len(distinct) > 1:
                found.append(TableConflict("ambiguous", system, code, "", element_of(rows_of_code[0].source_system),
                                           rows_of_code[0].source_display, (scope,), {"targets": distinct}))
            for row in rows_of_code:
                problem = target_problem(row, code_system)
                if problem:
                    found.append(TableConflict("invalid-target", system, code, f"{row.target_system}|{row.target_code}",
                                               element_of(row.source_system), row.source_display, (scope,), {"problem": problem}))
    for (element, folded), entries in by_display.items():
        distinct = sorted({f"{r.target_system}|{r.target_code}" for _s, r in entries})
        scopes = sorted({s for s, _r in entries})
        if len(distinct) > 1 and len(scopes) > 1:
            found.append(TableConflict(
                "inconsistent", element, folded, "", element, entries[0][1].source_display, tuple(scopes),
                {"mappings": [{"scope": s, "code": r.source_code, "target": f"{r.target_system}|{r.target_code}",
                               "target_display": r.target_display} for s, r in entries]}))
    return found


def target_problem(row: MappingRow, code_system: Callable[[str], CodeSystemIndex | None]) -> str | None:
    """Why a row's target cannot be used (in Chinese, for the reviewer), or None."""
    index = code_system(row.target_system)
    if index is None:
        return None  # a standard the hub does not hold: nothing to check against
    concept = index.get(row.target_code)
    if concept is None:
        return f"{row.target_code} 不在 {index.name} 中"
    if concept.inactive:
        return f"{row.target_code} 在 {index.name} 中已停用"
    kinds = concept.values("kind")
    if kinds and kinds[0] in ("chapter", "block", "panel") and element_of(row.source_system) != "lab-panel":
        return f"{row.target_code} 是分类节点（{kinds[0]}），不能作为映射目标"
    return None
