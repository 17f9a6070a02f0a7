"""What the indicators count, read from single resources (pure: no database)."""

from __future__ import annotations

from hub.dashboards.facts import Fact, facts, when
from tests.dashboards.support import CHC, LEAD, blood_pressure, fasting_glucose, follow_up, referral, visit


def test_local_days_follow_the_hub_zone() -> None:
    assert when("2025-12-31T16:30:00Z")[0] == "2026-01-01"          # Asia/Shanghai is UTC+8
    assert when("2026-03-31T23:59:59+08:00")[0] == "2026-03-31"
    assert when("2026-04-01")[0] == "2026-04-01"
    assert when("2026-04")[0] == "2026-04-01"
    assert when("not a date") == ("", 0) and when(None) == ("", 0)


def test_visits_and_follow_ups() -> None:
    assert facts("Encounter", visit("v", CHC, "2026-02-01T01:00:00+08:00", "EMER", patient="p-1")) == [
        Fact("visit", "2026-02-01", 1_769_878_800_000_000, CHC, "p-1", "EMER", status="finished")]
    untagged = visit("v", CHC, "2026-02-01")
    del untagged["serviceProvider"]
    assert facts("Encounter", untagged)[0].institution == CHC         # the owner's tag when no provider is named
    assert [f.kind for f in facts("Encounter", follow_up("f", CHC, "p-1", "2026-02-01"))] == ["follow-up:hypertension"]
    assert facts("Encounter", visit("v", CHC, "2026-02-01", status="cancelled")) == []


def test_readings_need_both_pressures_and_final_results() -> None:
    [reading] = facts("Observation", blood_pressure("b", "f", "p-1", "2026-02-01T09:00:00+08:00", 138, 88))
    assert (reading.kind, reading.other, reading.value1, reading.value2) == ("bp", "f", 138, 88)
    half = blood_pressure("b", "f", "p-1", "2026-02-01", 138, 88)
    half["component"] = half["component"][:1]
    assert facts("Observation", half) == []
    assert facts("Observation", {**blood_pressure("b", "f", "p-1", "2026-02-01", 1, 1), "status": "preliminary"}) == []
    [glucose] = facts("Observation", fasting_glucose("g", "f", "p-1", "2026-02-01", 126, code="1558-6", unit="mg/dL"))
    assert glucose.value1 == round(126 / 18.016, 3)                 # 126 mg/dL = 6.994 mmol/L


def test_referrals_need_the_referral_category() -> None:
    [fact] = facts("ServiceRequest", referral("r", CHC, LEAD, "2026-01-05", "up", "completed", patient="p-1"))
    assert fact == Fact("referral", "2026-01-05", 1_767_542_400_000_000, CHC, "p-1", "up", LEAD, "completed")
    order = referral("r", CHC, LEAD, "2026-01-05", "up")
    order["category"] = [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}]
    assert facts("ServiceRequest", order) == []


def test_a_source_record_counts_its_local_codes_and_those_mapped() -> None:
    local = "urn:hub:code:frontdb:lab-item"
    observation = {
        "resourceType": "Observation", "status": "final",
        "meta": {"source": "urn:hub:source:yushan-frontdb", "tag": [{"system": "urn:hub:institution", "code": CHC}]},
        "code": {"coding": [{"system": local, "code": "GLU"}, {"system": "http://loinc.org", "code": "14749-6"}]},
        "category": [{"coding": [{"system": "urn:hub:code:frontdb:category", "code": "LAB"}]}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "H"}]}],
        "extension": [{"url": "urn:x", "valueCodeableConcept": {"coding": [{"system": local, "code": "X"}]}}],
    }
    [record] = facts("Observation", observation)
    assert record == Fact("record", "", 0, CHC, "", "yushan-frontdb", value1=3, value2=1)
    assert facts("Observation", {**observation, "meta": {}}) == []   # not from a source: not a record
