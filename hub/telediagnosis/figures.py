"""The figures the dashboards show for 远程诊断: volume, turnaround (TAT p50/p90), SLA compliance, backlog.

Per group (``by`` site, center or modality) over tasks created in [from, to):

- ``volume``: tasks created; ``completed``: of them, reported;
- ``tat_p50_minutes`` / ``tat_p90_minutes``: minutes from intake to report of the completed ones (linear
  interpolation between ranks, as PostgreSQL's ``percentile_cont``);
- ``sla_met`` and ``sla_compliance``: completed by their deadline, and that share of the completed;
- ``escalated``: tasks that reached 100 % of their SLA;

and the backlog now: ``open`` tasks and those ``overdue`` (past their deadline), whenever created.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Any

from hub.errors import InvalidRequest
from hub.fhir.search_values import local_zone
from hub.store.database import Database
from hub.store.telediagnosis import TeleStore

GROUPS = {"site": "site", "center": "center_id", "modality": "modality"}
MIN_YEAR, MAX_YEAR = 1900, 2100


def local_days(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants bounding the local (``HUB_TIMEZONE``) days ``first`` to ``last``, both included."""
    if not (MIN_YEAR <= first.year and last.year <= MAX_YEAR):
        raise InvalidRequest(f"Dates must fall in the years {MIN_YEAR} to {MAX_YEAR}")
    if not timedelta(0) <= last - first <= timedelta(days=3660):
        raise InvalidRequest("'to' must be on or after 'from', within ten years")
    zone = local_zone()
    return datetime.combine(first, time(), zone), datetime.combine(last + timedelta(days=1), time(), zone)


def percentile(values: list[float], share: float) -> float | None:
    """The ``share`` percentile of ``values`` (linear between ranks); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figures(database: Database, start: datetime, end: datetime, by: str, now: datetime,
            institutions: frozenset[str] | None = None) -> dict[str, Any]:
    """The figures of tasks created in [start, end), grouped ``by`` (``institutions``: only tasks whose site or
    center is one of them)."""
    if by not in GROUPS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPS)}")
    if end <= start:
        raise InvalidRequest("'to' must be after 'from'")
    with database.connection(write=False) as connection:
        store = TeleStore(connection)
        created = store.tasks_between(start, end)
        backlog = store.open_tasks()
        config = store.config()
    centers = {c["id"]: c["institution"] for c in (config[1]["centers"] if config else [])}
    if institutions is not None:
        def visible(row: dict[str, Any]) -> bool:
            return row["site"] in institutions or centers.get(row["center_id"]) in institutions
        created = [r for r in created if visible(r)]
        backlog = [r for r in backlog if visible(r)]
    column = GROUPS[by]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in created:
        groups[row[column]].append(row)
    waiting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in backlog:
        waiting[row[column]].append(row)
    rows = [_group(key, groups.get(key, []), waiting.get(key, []), now) for key in sorted(set(groups) | set(waiting))]
    return {"from": start.isoformat(), "to": end.isoformat(), "by": by, "rows": rows,
            "total": _group("total", created, backlog, now)}


def _group(key: str, created: list[dict[str, Any]], backlog: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    done = [r for r in created if r["state"] == "completed" and r["completed_at"] is not None]
    minutes = [(r["completed_at"] - r["created"]).total_seconds() / 60 for r in done]
    met = sum(1 for r in done if r["completed_at"] <= r["deadline"])
    p50, p90 = percentile(minutes, 0.5), percentile(minutes, 0.9)
    return {
        "key": key, "volume": len(created), "completed": len(done),
        "tat_p50_minutes": round(p50, 1) if p50 is not None else None,
        "tat_p90_minutes": round(p90, 1) if p90 is not None else None,
        "sla_met": met, "sla_compliance": round(met / len(done), 4) if done else None,
        "escalated": sum(1 for r in created if r["sla_level"] >= 2),
        "open": len(backlog), "overdue": sum(1 for r in backlog if r["deadline"] <= now),
    }

