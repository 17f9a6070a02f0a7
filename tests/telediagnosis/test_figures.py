"""The dashboards' figures against hand-computed values: volume, TAT p50/p90, SLA compliance, backlog."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.fhir.search_values import local_zone
from hub.store.database import Database
from hub.telediagnosis.figures import figures, percentile
from tests.telediagnosis.support import SITE, TOWNSHIP, Clock, exam, region, reported_exams, study


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([10.0], 0.9) == 10.0
    assert percentile([40.0, 10.0, 20.0, 30.0], 0.5) == 25.0  # (20 + 30) / 2
    assert percentile([10.0, 20.0, 30.0, 40.0], 0.9) == 37.0  # 30 + 0.7 × 10


def test_volume_turnaround_compliance_and_backlog(database: Database) -> None:
    clock = Clock()
    start = clock.now
    reported_exams(database, clock)
    clock.now = start + timedelta(days=2)  # the DX task is now overdue
    by_center = figures(database, start - timedelta(hours=1), start + timedelta(hours=1), "center", clock.now)
    centers = {r["key"]: r for r in by_center["rows"]}
    imaging = centers["ks-imaging"]
    assert (imaging["volume"], imaging["completed"], imaging["sla_met"], imaging["sla_compliance"]) == (3, 3, 2, 0.6667)
    assert (imaging["tat_p50_minutes"], imaging["tat_p90_minutes"]) == (40.0, 80.0)  # 40 + 0.8 × 50
    assert (centers["ks-ecg"]["volume"], centers["ks-ecg"]["tat_p90_minutes"]) == (1, 20.0)
    other = centers["other-imaging"]
    assert (other["volume"], other["completed"], other["open"], other["overdue"]) == (1, 0, 1, 1)
    assert other["tat_p50_minutes"] is None and other["sla_compliance"] is None
    assert by_center["total"]["volume"] == 5 and by_center["total"]["completed"] == 4
    by_site = {r["key"]: r for r in figures(database, start, start + timedelta(minutes=1), "site", clock.now)["rows"]}
    assert by_site[SITE]["volume"] == 3 and by_site[TOWNSHIP]["tat_p50_minutes"] == 90.0
    # a client bound to the township sees only its own tasks
    bound = figures(database, start, start + timedelta(minutes=1), "site", clock.now, frozenset({TOWNSHIP}))
    assert [r["key"] for r in bound["rows"]] == [TOWNSHIP]


def test_a_local_day_is_counted_from_local_midnight(database: Database) -> None:
    clock = Clock()
    clock.now = datetime(2026, 12, 6, 20, 0, tzinfo=timezone.utc)  # 04:00 on 12-07 in 昆山 (UTC+8)
    tele = region(database, clock)
    exam(tele, study("s-early"))
    zone = local_zone()
    day = datetime(2026, 12, 7, tzinfo=zone)
    assert figures(database, day, day + timedelta(days=1), "site", clock.now)["total"]["volume"] == 1
    assert figures(database, day - timedelta(days=1), day, "site", clock.now)["total"]["volume"] == 0
