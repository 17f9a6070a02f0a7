"""The evaluators: for each indicator, its figures per institution over a period.

An evaluator returns :class:`Computed`:

- ``cells``: additive figures per institution (``[numerator, denominator]``; counts leave the denominator 0):
  a zone's or consortium's figure is the sum of its institutions';
- ``over``: figures that do not add up (percentiles, a maximum, conflicts seen at several institutions),
  computed for any set of institutions;
- ``breakdown``: other strata (by reading center, by re-test reason, by source) for a set of institutions.

Patients are persons of the EMPI (see :mod:`hub.store.dashboards`); days are local days.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection

from hub.recognition.decisions import RECOGNIZED, RETEST_REASONS, RETESTED, UNSPECIFIED
from hub.store.dashboards import DashboardStore
from hub.store.organizations import InstitutionTree
from hub.store.recognition import RecognitionStore
from hub.store.telediagnosis import TeleStore
from hub.telediagnosis.figures import local_days, percentile

#: Levels of 基层医疗卫生机构: 一级医院, 社区卫生服务中心, 乡镇卫生院.
PRIMARY_LEVELS = frozenset({"primary", "chc", "township"})
#: Outpatient and emergency (门急诊) encounter classes.
VISIT_CLASSES = frozenset({"AMB", "EMER"})
_RANK = {"tertiary": 3, "secondary": 2, "primary": 1, "chc": 1, "township": 1}
#: A source is on time when it last succeeded within this long.
FRESH = timedelta(hours=24)
#: Follow-ups a year that make management 规范 (国家基本公共卫生服务规范: at least four a year).
FOLLOW_UPS_PER_YEAR = 4

Cells = dict[str, dict[str, list[float]]]
#: One stratum of a breakdown: key, display name, figures (code → [numerator, denominator]).
Stratum = tuple[str, str, dict[str, list[float]]]


@dataclass(frozen=True)
class Context:
    """What an evaluation reads: one connection, the institutional tree, the period (local days), the clock."""

    connection: Connection
    tree: InstitutionTree
    first: date
    last: date
    now: datetime

    def institution(self, org_id: str) -> str:
        """The institution an Organization counts under: itself, or the one a department of it is part of."""
        return self.tree.ancestor(org_id, "institution") or org_id

    @property
    def days(self) -> tuple[str, str]:
        """The period as local-day strings (both included)."""
        return self.first.isoformat(), self.last.isoformat()


@dataclass
class Computed:
    """An indicator's figures (see the module)."""

    #: The institution an Organization id counts under (a department's is its institution's).
    place: Callable[[str], str] = str
    cells: Cells = field(default_factory=dict)
    over: Callable[[frozenset[str]], dict[str, list[float | None]]] | None = None
    breakdown: Callable[[frozenset[str]], dict[str, dict[str, list[Stratum]]]] | None = None

    def add(self, institution: str, code: str, numerator: float, denominator: float = 0) -> None:
        """Add to an institution's figure."""
        cell = self.cells.setdefault(self.place(institution), {}).setdefault(code, [0, 0])
        cell[0] += numerator
        cell[1] += denominator


def required_follow_ups(first: date, last: date) -> int:
    """Follow-ups a person needs in the period to count as 规范管理: four a year, in proportion for shorter
    periods (a quarter or a month: one)."""
    return max(1, round(FOLLOW_UPS_PER_YEAR * ((last - first).days + 1) / 365))


def primary_care(ctx: Context) -> Computed:
    """基层诊疗量占比: outpatient and emergency visits at primary-level institutions over all of them."""
    out = Computed(ctx.institution)
    for institution, code, count in DashboardStore(ctx.connection).visits(*ctx.days):
        if code in VISIT_CLASSES:
            primary = count if ctx.tree.level(ctx.institution(institution)) in PRIMARY_LEVELS else 0
            out.add(institution, "visits", count)
            out.add(institution, "primary-visits", primary)
            out.add(institution, "primary-care-share", primary, count)
    return out


def direction(tree: InstitutionTree, stated: str, source: str, target: str) -> str:
    """up, down or lateral: as the referral says, else from the two institutions' levels (``source`` and
    ``target`` are institutions, not departments)."""
    if stated in ("up", "down"):
        return stated
    low, high = _RANK.get(tree.level(source), 0), _RANK.get(tree.level(target), 0)
    if low and high and low != high:
        return "up" if low < high else "down"
    return "lateral"


def referrals(ctx: Context) -> Computed:
    """双向转诊: up and down referrals, their ratio, and the share completed by the receiving institution."""
    out = Computed(ctx.institution)
    for row in DashboardStore(ctx.connection).referrals(*ctx.days):
        institution, count = ctx.institution(row["institution"]), row["count"]
        way = direction(ctx.tree, row["code"], institution, ctx.institution(row["other"]))
        out.add(institution, "upward", count if way == "up" else 0)
        out.add(institution, "downward", count if way == "down" else 0)
        out.add(institution, "down-up-ratio", count if way == "down" else 0, count if way == "up" else 0)
        out.add(institution, "closure", count if row["status"] == "completed" else 0, count)
    return out


def program(name: str, reading: str) -> Callable[[Context], Computed]:
    """高血压 / 糖尿病规范管理: persons managed, managed to the norm, and controlled at their latest follow-up."""
    def evaluate(ctx: Context) -> Computed:
        out = Computed(ctx.institution)
        rows = DashboardStore(ctx.connection).program(name, reading, *ctx.days,
                                                       required=required_follow_ups(ctx.first, ctx.last))
        for row in rows:
            out.add(row["institution"], "managed", row["managed"])
            out.add(row["institution"], "standard-management", row["standard"], row["managed"])
            out.add(row["institution"], "controlled", row["controlled"], row["managed"])
        return out
    return evaluate


def recognition(ctx: Context) -> Computed:
    """检查检验结果互认: recognition rate, re-tests (by reason), avoided tests and cost."""
    out = Computed(ctx.institution)
    reasons: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for total in RecognitionStore(ctx.connection).institution_totals(*ctx.days):
        if not total["eligible"]:
            continue
        institution, count = ctx.institution(total["institution"]), int(total["checks"])
        recognized = count if total["decision"] == RECOGNIZED else 0
        retested = count if total["decision"] == RETESTED else 0
        out.add(institution, "recognition-rate", recognized, count)
        out.add(institution, "retested", retested)
        out.add(institution, "avoided-tests", recognized)
        out.add(institution, "avoided-cost", int(total["price_fen"] or 0) / 100 if recognized else 0)
        if retested:
            reasons[institution][total["reason"] or UNSPECIFIED] += retested

    def breakdown(institutions: frozenset[str]) -> dict[str, dict[str, list[Stratum]]]:
        summed: dict[str, float] = defaultdict(float)
        for institution in institutions & set(reasons):
            for reason, count in reasons[institution].items():
                summed[reason] += count
        names = {**RETEST_REASONS, UNSPECIFIED: "未说明"}
        return {"retested": {"reason": [(code, names.get(code, code), {"retested": [summed[code], 0]})
                                         for code in names if summed.get(code)]}}
    out.breakdown = breakdown
    return out


_TELE_COUNTS = ("volume", "completed", "sla-compliance", "escalated")


def telediagnosis(ctx: Context) -> Computed:
    """远程诊断: volume, reported, TAT p50/p90, SLA compliance, escalations; by site, and by reading center."""
    store = TeleStore(ctx.connection)
    start, end = local_days(ctx.first, ctx.last)
    totals = store.site_totals(start, end)
    config = store.config()
    centers = {c["id"]: c["institution"] for c in (config[1]["centers"] if config else [])}
    minutes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for site, center_id, values in store.turnarounds(start, end):
        minutes[(ctx.institution(site), centers.get(center_id, center_id))].extend(values)
    out = Computed(ctx.institution)
    for row in totals:
        for code, cell in _tele_cells(row).items():
            out.add(row["site"], code, *cell)

    def tat(values: list[float]) -> dict[str, list[float | None]]:
        return {"tat-p50": [_rounded(percentile(values, 0.5)), 0], "tat-p90": [_rounded(percentile(values, 0.9)), 0]}

    def over(institutions: frozenset[str]) -> dict[str, list[float | None]]:
        return tat([value for (site, _center), values in minutes.items() if site in institutions for value in values])

    def breakdown(institutions: frozenset[str]) -> dict[str, dict[str, list[Stratum]]]:
        by_center: dict[str, dict[str, list[Any]]] = defaultdict(lambda: {code: [0, 0] for code in _TELE_COUNTS})
        for row in totals:
            if ctx.institution(row["site"]) in institutions:
                figures = by_center[centers.get(row["center_id"], row["center_id"])]
                for code, (numerator, denominator) in _tele_cells(row).items():
                    figures[code][0] += numerator
                    figures[code][1] += denominator
        strata: dict[str, list[Stratum]] = defaultdict(list)
        for center, figures in sorted(by_center.items()):
            figures.update(tat([v for (site, c), values in minutes.items() if c == center and site in institutions
                                for v in values]))
            node = ctx.tree.nodes.get(center)
            for code in ("volume", "completed", "tat-p50", "tat-p90", "sla-compliance", "escalated"):
                strata[code].append((center, node.name if node else center, {code: figures[code]}))
        return {code: {"center": rows} for code, rows in strata.items()}

    out.over, out.breakdown = over, breakdown
    return out


def _tele_cells(row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {"volume": (row["volume"], 0), "completed": (row["completed"], 0),
            "sla-compliance": (row["met"], row["completed"]), "escalated": (row["escalated"], 0)}


def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def health(ctx: Context) -> Computed:
    """The data center's state now: records and coding coverage per source, sources on time, the longest lag,
    quarantined rows, open mapping conflicts and EMPI reviews."""
    store = DashboardStore(ctx.connection)
    out = Computed(ctx.institution)
    per_source: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for source, institution, records, coded, standard in store.records():
        out.add(institution, "records", records)
        out.add(institution, "mapping-coverage", standard, coded)
        per_source[source]["records"][0] += records
    sources = store.sources()
    quarantined = store.quarantined()
    lags: dict[str, list[float | None]] = defaultdict(list)
    institution_of = {s["source_id"]: ctx.institution(s["institution"]) for s in sources}
    for source in sources:
        out.add(source["institution"], "quarantined", quarantined.get(source["source_id"], 0))
        if source["enabled"]:
            success = source["last_success"]
            out.add(source["institution"], "fresh-sources",
                    1 if success is not None and ctx.now - success <= FRESH else 0, 1)
            lags[ctx.institution(source["institution"])].append(
                round((ctx.now - success).total_seconds() / 3600, 1) if success is not None else None)
    conflicts = [({ctx.institution(i) for i in orjson.loads(listed or "[]") if isinstance(i, str)}, count)
                 for listed, count in store.open_conflicts()]
    for institution, count in store.open_match_reviews().items():
        out.add(institution, "match-reviews", count)

    def over(institutions: frozenset[str]) -> dict[str, list[float | None]]:
        known = [lag for institution in institutions & set(lags) for lag in lags[institution] if lag is not None]
        return {"max-lag-hours": [max(known) if known else None, 0],
                "mapping-conflicts": [sum(count for listed, count in conflicts if listed & institutions), 0]}

    def breakdown(institutions: frozenset[str]) -> dict[str, dict[str, list[Stratum]]]:
        rows = [(source, source, {"records": figures["records"]}) for source, figures in sorted(per_source.items())
                if institution_of.get(source) in institutions]
        return {"records": {"source": rows}}

    out.over, out.breakdown = over, breakdown
    return out


#: The evaluator of each Measure (by id).
EVALUATORS: dict[str, Callable[[Context], Computed]] = {
    "data-center-health": health,
    "primary-care-share": primary_care,
    "two-way-referral": referrals,
    "result-recognition": recognition,
    "tele-diagnosis": telediagnosis,
    "hypertension-management": program("hypertension", "bp"),
    "diabetes-management": program("diabetes", "glucose"),
}
