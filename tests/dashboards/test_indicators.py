"""Indicator values against hand-computed expectations on a small fixed dataset (local zone Asia/Shanghai)."""

from __future__ import annotations

import pytest

from hub.dashboards.indicators import required_follow_ups
from hub.store.database import Database
from tests.dashboards.support import (
    CHC,
    LEAD,
    TCM,
    THC,
    ZONE_1,
    ZONE_TCM,
    blood_pressure,
    children,
    fasting_glucose,
    figures,
    follow_up,
    put,
    referral,
    roster,
    visit,
)
from tests.empi.support import citizen_id, run_empi, source_patient, store


def test_primary_care_share_counts_outpatient_and_emergency_visits_by_local_day(database: Database) -> None:
    dashboards = roster(database)
    put(database,
        visit("v1", LEAD, "2026-01-10T09:00:00+08:00"),
        visit("v2", LEAD, "2026-03-31T23:30:00+08:00", "EMER"),       # the quarter's last local minutes: in
        visit("v3", LEAD, "2026-04-01T00:00:00+08:00"),               # the next quarter's first instant: out
        visit("v4", LEAD, "2025-12-31T16:30:00Z"),                    # 2026-01-01 00:30 local: in
        visit("v5", CHC, "2026-02-01"),
        visit("v6", CHC, "2026-02-02T10:00:00+08:00"),
        visit("v7", CHC, "2026-02-03T10:00:00+08:00", "EMER"),
        visit("v8", THC, "2026-03-01T10:00:00+08:00"),
        visit("v9", LEAD, "2026-02-01T10:00:00+08:00", "IMP"),        # inpatient: not 门急诊
        visit("v10", CHC, "2026-02-01T10:00:00+08:00", status="cancelled"),
        follow_up("f1", CHC, "p-1", "2026-02-01T10:00:00+08:00"))    # a follow-up is not a visit
    q1 = figures(dashboards, "primary-care-share", "2026-01-01", "2026-03-31")
    assert q1["visits"][2] == 7 and q1["primary-visits"][2] == 4
    assert q1["primary-care-share"] == (4, 7, round(4 / 7, 4))
    assert children(dashboards, "primary-care-share", "2026-01-01", "2026-03-31", "primary-care-share",
                    "consortium-ks") == {ZONE_1: 0.5, ZONE_TCM: 1.0, "zone-ks-hitech": None}
    zone = figures(dashboards, "primary-care-share", "2026-01-01", "2026-03-31", ZONE_1)
    assert zone["primary-care-share"] == (3, 6, 0.5)
    assert figures(dashboards, "primary-care-share", "2026-04-01", "2026-06-30")["visits"][2] == 1
    # a visit moved out of the period (and one withdrawn) stops counting: the facts follow every write
    put(database, visit("v1", LEAD, "2026-05-10T09:00:00+08:00"), visit("v6", CHC, "2026-02-02", status="entered-in-error"))
    assert figures(dashboards, "primary-care-share", "2026-01-01", "2026-03-31")["primary-care-share"] == (3, 5, 0.6)


def test_two_way_referrals_by_direction_ratio_and_closure(database: Database) -> None:
    dashboards = roster(database)
    put(database,
        referral("r1", CHC, LEAD, "2026-01-05", "up", "completed"),
        referral("r2", CHC, LEAD, "2026-02-05", "up"),
        referral("r3", LEAD, CHC, "2026-02-10", "down", "completed"),
        referral("r4", THC, TCM, "2026-03-10T08:00:00+08:00", None),     # no direction: township → tertiary is up
        referral("r5", LEAD, CHC, "2026-04-02", "down"))                   # next quarter
    q1 = figures(dashboards, "two-way-referral", "2026-01-01", "2026-03-31")
    assert q1["upward"][2] == 3 and q1["downward"][2] == 1
    assert q1["down-up-ratio"] == (1, 3, round(1 / 3, 4))
    assert q1["closure"] == (2, 4, 0.5)
    zone = figures(dashboards, "two-way-referral", "2026-01-01", "2026-03-31", ZONE_TCM)
    assert zone["upward"][2] == 1 and zone["closure"] == (0, 1, 0.0)


def _linked_resident(database: Database) -> tuple[str, str]:
    """One resident registered at the community center and at the township center (same ID number): the EMPI
    links both Patients to one person."""
    number = citizen_id("32058319600101001")
    store(database, source_patient(CHC, "A1", "王建国", id_number=number, birth="1960-01-01"),
          source_patient(THC, "A2", "王建国", id_number=number, birth="1960-01-01"))
    run_empi(database)
    return f"{CHC}-A1", f"{THC}-A2"


def test_hypertension_management_counts_each_person_once_across_institutions(database: Database) -> None:
    dashboards = roster(database)
    a1, a2 = _linked_resident(database)
    put(database,
        # person A: two follow-ups at each of two institutions — four in the year together; last one controlled
        follow_up("fa1", CHC, a1, "2026-01-15T09:00:00+08:00"), follow_up("fa2", CHC, a1, "2026-04-15T09:00:00+08:00"),
        follow_up("fa3", THC, a2, "2026-07-15T09:00:00+08:00"), follow_up("fa4", THC, a2, "2026-10-15T09:00:00+08:00"),
        blood_pressure("ba1", "fa1", a1, "2026-01-15T09:10:00+08:00", 150, 95),
        blood_pressure("ba4", "fa4", a2, "2026-10-15T09:10:00+08:00", 135, 85, THC),
        # person B: three follow-ups; the latest follow-up reading is high; a later clinic reading does not count
        follow_up("fb1", CHC, "p-b", "2026-02-01T09:00:00+08:00"), follow_up("fb2", CHC, "p-b", "2026-05-01T09:00:00+08:00"),
        follow_up("fb3", CHC, "p-b", "2026-08-01T09:00:00+08:00"),
        blood_pressure("bb3", "fb3", "p-b", "2026-08-01T09:10:00+08:00", 150, 95),
        visit("vb", LEAD, "2026-11-01T09:00:00+08:00", patient="p-b"),
        blood_pressure("bb-clinic", "vb", "p-b", "2026-11-01T09:10:00+08:00", 120, 80, LEAD),
        # person C: four follow-ups in the year (the last in its final local hour), one just after; diastolic 92
        *(follow_up(f"fc{n}", CHC, "p-c", when) for n, when in enumerate(
            ("2026-03-01T09:00:00+08:00", "2026-06-01T09:00:00+08:00", "2026-09-01T09:00:00+08:00",
             "2026-12-31T23:00:00+08:00", "2027-01-01T00:30:00+08:00"))),
        blood_pressure("bc3", "fc3", "p-c", "2026-12-31T23:10:00+08:00", 138, 92),
        blood_pressure("bc4", "fc4", "p-c", "2027-01-01T00:40:00+08:00", 120, 80),
        # person D: one follow-up, in the last minute of the year before
        follow_up("fd1", LEAD, "p-d", "2025-12-31T23:59:00+08:00"),
        # a diabetes follow-up is not a hypertension one
        follow_up("fe1", CHC, "p-e", "2026-03-01T09:00:00+08:00", "diabetes"))
    year = figures(dashboards, "hypertension-management", "2026-01-01", "2026-12-31")
    assert year["managed"][2] == 3                             # A (once), B, C
    assert year["standard-management"] == (2, 3, round(2 / 3, 4))   # A (2 + 2 follow-ups), C
    assert year["controlled"] == (1, 3, round(1 / 3, 4))       # only A's latest follow-up reading is < 140/90
    # A counts at the institution of the latest follow-up (the township center), B and C at the community center
    assert figures(dashboards, "hypertension-management", "2026-01-01", "2026-12-31", THC)["managed"][2] == 1
    assert figures(dashboards, "hypertension-management", "2026-01-01", "2026-12-31", CHC)["standard-management"] == \
        (1, 2, 0.5)
    # a quarter needs one follow-up: in Q1 A, B and C each had one (A's reading then was high)
    assert required_follow_ups(*(__import__("datetime").date(2026, m, d) for m, d in ((1, 1), (3, 31)))) == 1
    q1 = figures(dashboards, "hypertension-management", "2026-01-01", "2026-03-31")
    assert q1["managed"][2] == 3 and q1["standard-management"] == (3, 3, 1.0) and q1["controlled"] == (0, 3, 0.0)


def test_without_the_empi_link_the_same_resident_counts_twice(database: Database) -> None:
    dashboards = roster(database)
    put(database, *(follow_up(f"f{n}", institution, patient, f"2026-0{n}-10T09:00:00+08:00")
                    for n, (institution, patient) in enumerate(
                        ((CHC, "p-x1"), (CHC, "p-x1"), (THC, "p-x2"), (THC, "p-x2")), start=1)))
    assert figures(dashboards, "hypertension-management", "2026-01-01", "2026-12-31")["standard-management"] == \
        (0, 2, 0.0)


def test_diabetes_control_uses_fasting_glucose_in_mmol_per_litre(database: Database) -> None:
    dashboards = roster(database)
    put(database,
        *(follow_up(f"fe{n}", CHC, "p-e", f"2026-0{n * 3}-05T09:00:00+08:00", "diabetes") for n in range(1, 4)),
        follow_up("fe4", CHC, "p-e", "2026-12-05T09:00:00+08:00", "diabetes"),
        fasting_glucose("ge4", "fe4", "p-e", "2026-12-05T09:10:00+08:00", 6.5),
        follow_up("ff1", TCM, "p-f", "2026-05-05T09:00:00+08:00", "diabetes"),
        fasting_glucose("gf1", "ff1", "p-f", "2026-05-05T09:10:00+08:00", 140, code="1558-6", unit="mg/dL",
                        institution=TCM))                                # 140 mg/dL = 7.77 mmol/L: not controlled
    year = figures(dashboards, "diabetes-management", "2026-01-01", "2026-12-31")
    assert year["managed"][2] == 2
    assert year["standard-management"] == (1, 2, 0.5)
    assert year["controlled"] == (1, 2, 0.5)


def test_a_period_and_unit_are_checked(database: Database) -> None:
    from datetime import date

    from hub.errors import Forbidden, InvalidRequest, NotFound
    dashboards = roster(database)
    with pytest.raises(NotFound):
        dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 3, 31), "org-nowhere", None)
    with pytest.raises(NotFound):
        dashboards.evaluate("no-such-measure", date(2026, 1, 1), date(2026, 3, 31), None, None)
    with pytest.raises(InvalidRequest):
        dashboards.evaluate("primary-care-share", date(2026, 3, 31), date(2026, 1, 1), None, None)
    with pytest.raises(Forbidden):  # a client of one institution may not see its zone
        dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 3, 31), ZONE_1, frozenset({CHC}))
    own = dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 3, 31), None, frozenset({CHC}))
    assert own.unit.key == "" and [row.key for row in own.strata["institution"]["visits"]] == [CHC]


def test_a_deleted_visit_stops_counting(database: Database) -> None:
    dashboards = roster(database)
    put(database, visit("v1", CHC, "2026-02-01"), visit("v2", CHC, "2026-02-02"))
    with database.fhir_service(write=True) as service:
        service.delete("Encounter", "v2")
    assert figures(dashboards, "primary-care-share", "2026-01-01", "2026-03-31")["visits"][2] == 1


def test_an_evaluation_counts_a_bounded_part_of_a_backlog_and_says_pending(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import date

    from hub.dashboards import service
    from hub.dashboards.report import measure_report
    from hub.fhir.instants import now_utc
    dashboards = roster(database)
    dashboards.refresh()
    put(database, *(visit(f"v{n}", CHC, "2026-02-01") for n in range(3)))
    monkeypatch.setattr(service, "CATCH_UP", 2)
    behind = dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 3, 31), None, None)
    assert behind.pending == 1 and measure_report(behind, now_utc())["status"] == "pending"
    assert [f.numerator for f in behind.unit.figures if f.group.code == "visits"] == [2]
    done = dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 3, 31), None, None)
    assert done.pending == 0 and measure_report(done, now_utc())["status"] == "complete"
    assert [f.numerator for f in done.unit.figures if f.group.code == "visits"] == [3]
