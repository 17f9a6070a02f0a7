"""An indicator evaluated for one unit of the institutional tree (region, consortium, zone or institution): its
figures, its children's (the drill-down), and its strata (per institution, and the indicator's breakdowns)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from hub.dashboards.definitions import GroupDef, MeasureDef
from hub.dashboards.indicators import Computed, Stratum
from hub.errors import Forbidden, NotFound
from hub.store.organizations import InstitutionTree

#: The unit that stands for every institution a caller may see (no single root).
ALL = ""
KIND_NAMES = {"region": "区域", "consortium": "医联体", "zone": "片区", "institution": "机构"}


@dataclass(frozen=True)
class Unit:
    """A node of the tree and the institutions under it."""

    unit_id: str
    name: str
    kind: str
    institutions: frozenset[str]


@dataclass(frozen=True)
class Figure:
    """One figure: numerator (or the value), denominator, and the score the Measure's scoring gives."""

    group: GroupDef
    numerator: float | None
    denominator: float | None

    @property
    def score(self) -> float | None:
        """proportion and ratio: numerator / denominator (None when the denominator is 0); else the value."""
        if self.group.scoring in ("proportion", "ratio"):
            if not self.denominator or self.numerator is None:
                return None
            return round(self.numerator / self.denominator, 4)
        return self.numerator


@dataclass(frozen=True)
class Row:
    """A unit's (or a stratum's) figures."""

    key: str
    name: str
    kind: str
    figures: tuple[Figure, ...]


@dataclass(frozen=True)
class Evaluation:
    """An indicator over a period for a unit."""

    measure: MeasureDef
    first: date
    last: date
    unit: Row
    children: tuple[Row, ...]
    #: Stratifier code → strata, per figure code.
    strata: dict[str, dict[str, tuple[Row, ...]]]
    #: Writes not yet counted (a bulk load being read into facts): the figures are not final yet.
    pending: int = 0


def units(tree: InstitutionTree, reach: frozenset[str] | None) -> dict[str, Unit]:
    """Every unit of the tree a caller reaching ``reach`` (None: everything) may ask for: those whose institutions
    it all reaches; with :data:`ALL`, the whole of what it reaches."""
    under: dict[str, set[str]] = {node_id: set() for node_id in tree.nodes}
    for node in tree.nodes.values():
        if node.kind != "institution":
            continue
        current: str | None = node.org_id
        for _ in range(16):
            if current is None or current not in tree.nodes:
                break
            under[current].add(node.org_id)
            current = tree.nodes[current].parent or None
    institutions = frozenset(n.org_id for n in tree.nodes.values() if n.kind == "institution")
    if reach is not None:  # the institutions it reads (its consortia's zones are no institutions), and unknown ids
        institutions = frozenset(i for i in reach if i in institutions or i not in tree.nodes)
    out = {ALL: Unit(ALL, "全部", "all", institutions)}
    for node_id, institutions in under.items():
        if institutions and (reach is None or institutions <= reach):
            node = tree.nodes[node_id]
            out[node_id] = Unit(node_id, node.name, node.kind, frozenset(institutions))
    return out


def children(tree: InstitutionTree, allowed: dict[str, Unit], unit: Unit) -> list[Unit]:
    """The units one level down (for :data:`ALL`: the top units allowed)."""
    if unit.unit_id == ALL:
        return [u for key, u in allowed.items() if key != ALL and (tree.nodes[key].parent or None) not in allowed]
    return [allowed[node.org_id] for node in tree.nodes.values()
            if node.parent == unit.unit_id and node.org_id in allowed]


def under_any(tree: InstitutionTree, unit_id: str) -> bool:
    """Whether some institution is ``unit_id`` or lies under it."""
    return any(tree.ancestor(node.org_id, tree.nodes[unit_id].kind) == unit_id
               for node in tree.nodes.values() if node.kind == "institution")


def resolve(tree: InstitutionTree, unit_id: str | None, reach: frozenset[str] | None) -> tuple[Unit, list[Unit]]:
    """The unit asked for and its children; 404 when the tree has no such unit, 403 when the caller reaches
    only part of it."""
    allowed = units(tree, reach)
    key = unit_id or ALL
    if key not in allowed:
        if key in tree.nodes and under_any(tree, key):
            raise Forbidden(f"Unit {key} includes institutions this client may not see")
        if key in tree.nodes:
            raise NotFound(f"Organization/{key} has no institution under it: not a unit of the dashboards "
                           "(a department counts with its institution)")
        raise NotFound(f"Organization/{key} is not a unit of the consortium's roster")
    unit = allowed[key]
    return unit, sorted(children(tree, allowed, unit), key=lambda u: u.unit_id)


def row(measure: MeasureDef, computed: Computed, key: str, name: str, kind: str,
        institutions: Iterable[str]) -> Row:
    """The figures of ``institutions`` together."""
    chosen = frozenset(institutions)
    sums: dict[str, list[float]] = {}
    for institution in chosen & set(computed.cells):
        for code, (numerator, denominator) in computed.cells[institution].items():
            cell = sums.setdefault(code, [0, 0])
            cell[0] += numerator
            cell[1] += denominator
    direct = computed.over(chosen) if computed.over is not None else {}
    figures = []
    for group in measure.groups:
        numerator, denominator = direct.get(group.code) or sums.get(group.code) or [0, 0]
        figures.append(Figure(group, _number(numerator), _number(denominator)
                              if group.scoring in ("proportion", "ratio") else None))
    return Row(key, name, kind, tuple(figures))


def _number(value: float | None) -> float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(value, 2)


def evaluate(measure: MeasureDef, computed: Computed, tree: InstitutionTree, unit: Unit, below: list[Unit],
             first: date, last: date, pending: int = 0) -> Evaluation:
    """The indicator for ``unit``, its children ``below`` and its strata."""
    top = row(measure, computed, unit.unit_id, unit.name, unit.kind, unit.institutions)
    kids = tuple(row(measure, computed, u.unit_id, u.name, u.kind, u.institutions) for u in below)
    per_institution = tuple(
        row(measure, computed, i, tree.nodes[i].name if i in tree.nodes else i, "institution", (i,))
        for i in sorted(unit.institutions))
    strata: dict[str, dict[str, tuple[Row, ...]]] = {"institution": {g.code: per_institution for g in measure.groups}}
    extra = computed.breakdown(unit.institutions) if computed.breakdown is not None else {}
    for code, by_stratifier in extra.items():
        for stratifier, rows in by_stratifier.items():
            strata.setdefault(stratifier, {})[code] = tuple(_stratum_row(measure, code, s) for s in rows)
    return Evaluation(measure, first, last, top, kids, strata, pending)


def _stratum_row(measure: MeasureDef, code: str, stratum: Stratum) -> Row:
    key, name, values = stratum
    group = measure.group(code)
    numerator, denominator = values.get(code, [0, 0])
    return Row(key, name, "", (Figure(group, _number(numerator), _number(denominator)
                                      if group.scoring in ("proportion", "ratio") else None),))
