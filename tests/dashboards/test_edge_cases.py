"""Edge cases found in review: odd numbers, departments, the latest follow-up's own reading, same-day order,
a consortium-bound client, repeated codes and versioned references."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from hub.dashboards.facts import facts
from hub.errors import NotFound
from hub.store.database import Database
from tests.dashboards.support import CHC, blood_pressure, follow_up, put, roster, visit
from tests.dashboards.support import figures as evaluated


def test_a_number_beyond_a_double_does_not_stop_the_counting(database: Database) -> None:
    dashboards = roster(database)
    huge = blood_pressure("b-huge", "f1", "p-1", "2026-02-01T09:05:00+08:00", 120, 80)
    huge["component"][0]["valueQuantity"]["value"] = Decimal("1E+400")
    put(database, follow_up("f1", CHC, "p-1", "2026-02-01T09:00:00+08:00"), huge, visit("v1", CHC, "2026-02-01"))
    year = evaluated(dashboards, "hypertension-management", "2026-01-01", "2026-12-31")
    assert year["managed"][2] == 1 and year["controlled"] == (0, 1, 0.0)
    assert evaluated(dashboards, "primary-care-share", "2026-01-01", "2026-12-31")["visits"][2] == 1
    assert dashboards.pending() == 0


def test_a_department_counts_with_its_institution_and_is_no_unit(database: Database) -> None:
    dashboards = roster(database)
    with database.fhir_service(write=True) as service:
        service.update("Organization", "dept-chc-gp", {
            "resourceType": "Organization", "id": "dept-chc-gp", "name": "全科诊室",
            "type": [{"coding": [{"system": "urn:hub:organization-kind", "code": "department"}]}],
            "partOf": {"reference": f"Organization/{CHC}"}})
    department_visit = visit("v2", CHC, "2026-02-01")
    department_visit["serviceProvider"] = {"reference": "Organization/dept-chc-gp"}
    put(database, visit("v1", CHC, "2026-02-01"), department_visit)
    share = evaluated(dashboards, "primary-care-share", "2026-01-01", "2026-12-31", CHC)
    assert share["primary-care-share"] == (2, 2, 1.0)
    with pytest.raises(NotFound, match="department counts with its institution"):
        dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 12, 31), "dept-chc-gp", None)


def test_control_is_the_reading_at_the_latest_follow_up(database: Database) -> None:
    dashboards = roster(database)
    put(database,
        follow_up("f1", CHC, "p-1", "2026-02-01T09:00:00+08:00"),
        blood_pressure("b1", "f1", "p-1", "2026-02-01T09:05:00+08:00", 120, 80),
        follow_up("f2", CHC, "p-1", "2026-11-01T09:00:00+08:00"))  # the latest follow-up measured nothing
    assert evaluated(dashboards, "hypertension-management", "2026-01-01", "2026-12-31")["controlled"] == (0, 1, 0.0)
    # two readings at one visit: the later of the day counts, whatever the ids' order
    put(database, blood_pressure("obs-9", "f2", "p-1", "2026-11-01T08:10:00+08:00", 160, 100),
        blood_pressure("obs-10", "f2", "p-1", "2026-11-01T17:10:00+08:00", 120, 80))
    assert evaluated(dashboards, "hypertension-management", "2026-01-01", "2026-12-31")["controlled"] == (1, 1, 1.0)


def test_a_consortium_bound_client_sees_institutions_not_zones(database: Database) -> None:
    dashboards = roster(database)
    [reach] = database.reach(frozenset({"consortium-ks"}))
    assert "zone-ks-1" in reach  # a consortium's reach names its zones too
    evaluation = dashboards.evaluate("primary-care-share", date(2026, 1, 1), date(2026, 12, 31), None, reach)
    listed = {row.key for row in evaluation.strata["institution"]["visits"]}
    assert CHC in listed and not listed & {"consortium-ks", "zone-ks-1", "zone-ks-tcm", "zone-ks-hitech"}


def test_repeated_program_codes_and_versioned_references() -> None:
    twice = follow_up("f1", CHC, "p-1", "2026-02-01")
    twice["type"].append(twice["type"][0])
    assert len(facts("Encounter", twice)) == 1
    versioned = visit("v1", CHC, "2026-02-01", patient="p-1")
    versioned["subject"] = {"reference": "Patient/p-1/_history/3"}
    versioned["serviceProvider"] = {"reference": f"Organization/{CHC}/_history/2"}
    [fact] = facts("Encounter", versioned)
    assert (fact.patient, fact.institution) == ("p-1", CHC)


def test_record_totals_follow_updates_and_deletions(database: Database) -> None:
    dashboards = roster(database)

    def lab(obs_id: str, mapped: bool) -> dict:
        codings = [{"system": "urn:hub:code:lis-1:lab-item", "code": "GLU"}]
        if mapped:
            codings.append({"system": "http://loinc.org", "code": "14749-6"})
        return {"resourceType": "Observation", "id": obs_id, "status": "final",
                "meta": {"source": "urn:hub:source:lis-1", "tag": [{"system": "urn:hub:institution", "code": CHC}]},
                "code": {"coding": codings}, "subject": {"reference": "Patient/p-1"}}

    put(database, lab("o1", True), lab("o2", True), lab("o3", False))
    health = evaluated(dashboards, "data-center-health", "2026-01-01", "2026-12-31", CHC)
    assert health["records"][2] == 3 and health["mapping-coverage"] == (2, 3, round(2 / 3, 4))
    put(database, lab("o3", True))                       # mapped after a governance decision
    with database.fhir_service(write=True) as service:
        service.delete("Observation", "o1")
    health = evaluated(dashboards, "data-center-health", "2026-01-01", "2026-12-31", CHC)
    assert health["records"][2] == 2 and health["mapping-coverage"] == (2, 2, 1.0)
    assert dashboards.rebuild().resources == 2           # a rebuild gives the same totals
    assert evaluated(dashboards, "data-center-health", "2026-01-01", "2026-12-31", CHC)["records"][2] == 2
