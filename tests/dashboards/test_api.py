"""The indicators over real HTTP: Measure/$evaluate-measure (GET and POST) → a valid summary MeasureReport, the
compact JSON the page reads (the same numbers), the stored Measures, permissions, and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B.measurereport import MeasureReport

from hub.auth.roles import Role
from hub.dashboards.definitions import measures
from hub.dashboards.service import Dashboards
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import assert_outcome, bearer, fhir_client
from tests.dashboards.support import CHC, LEAD, THC, ZONE_1, follow_up, put, referral, roster, visit

MANAGER = principal(Role.GOVERNANCE)
COMMUNITY = principal(Role.APP, institutions=(CHC,))
READER = principal(Role.READER, institutions=("org-ks-imaging",))
NUMERATOR = "http://terminology.hl7.org/CodeSystem/measure-population"


@pytest.fixture
def data(server: str, database: Database) -> Dashboards:
    dashboards = roster(database)
    put(database,
        visit("v1", LEAD, "2026-02-01T09:00:00+08:00"), visit("v2", CHC, "2026-02-01T09:00:00+08:00"),
        visit("v3", CHC, "2026-03-01T09:00:00+08:00", "EMER"), visit("v4", THC, "2026-03-31T23:59:00+08:00"),
        referral("r1", CHC, LEAD, "2026-01-05", "up", "completed"), referral("r2", LEAD, CHC, "2026-02-05", "down"),
        follow_up("f1", CHC, "p-1", "2026-02-01T09:00:00+08:00"))
    return dashboards


def _populations(group: dict[str, Any]) -> dict[str, int]:
    return {p["code"]["coding"][0]["code"]: p["count"] for p in group.get("population") or ()}


def _group(report: dict[str, Any], code: str) -> dict[str, Any]:
    return next(g for g in report["group"] if g["code"]["coding"][0]["code"] == code)


def test_evaluate_measure_answers_a_valid_summary_report_with_strata_per_institution(data: Dashboards,
                                                                                      server: str) -> None:
    with fhir_client(server, MANAGER) as fhir:
        response = fhir.get("/Measure/primary-care-share/$evaluate-measure",
                            params={"periodStart": "2026-01-01", "periodEnd": "2026-03-31",
                                    "subject": "Organization/consortium-ks"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    report = response.json()
    MeasureReport.model_validate(report)  # valid FHIR
    assert report["type"] == "summary" and report["status"] == "complete"
    assert report["measure"] == "urn:hub:measure:primary-care-share"
    assert report["period"] == {"start": "2026-01-01", "end": "2026-03-31"}
    assert report["reporter"]["reference"] == "Organization/consortium-ks"
    share = _group(report, "primary-care-share")
    assert _populations(share) == {"numerator": 3, "denominator": 4}
    assert share["measureScore"]["value"] == 0.75
    [stratifier] = share["stratifier"]
    strata = {s["value"]["coding"][0]["code"]: s for s in stratifier["stratum"]}
    assert _populations(strata[CHC]) == {"numerator": 2, "denominator": 2}
    assert _populations(strata[LEAD]) == {"numerator": 0, "denominator": 1}
    assert strata[CHC]["value"]["text"] == "玉山镇社区卫生服务中心"
    assert sum(_populations(s)["denominator"] for s in strata.values()) == 4  # the strata add up to the total


def test_post_with_parameters_and_the_measure_by_canonical_url(data: Dashboards, server: str) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "measure", "valueCanonical": "urn:hub:measure:two-way-referral|2026.1"},
        {"name": "periodStart", "valueDate": "2026-01"}, {"name": "periodEnd", "valueDate": "2026-03"},
        {"name": "reportType", "valueCode": "summary"}]}
    with fhir_client(server, MANAGER) as fhir:
        response = fhir.post("/Measure/$evaluate-measure", json=body)
    assert response.status_code == 200, response.text
    report = response.json()
    MeasureReport.model_validate(report)
    assert "reporter" not in report and report["period"] == {"start": "2026-01-01", "end": "2026-03-31"}
    assert _group(report, "upward")["measureScore"]["value"] == 1
    assert _populations(_group(report, "closure")) == {"numerator": 1, "denominator": 2}


def test_the_page_api_gives_the_numbers_of_the_measure_reports(data: Dashboards, server: str) -> None:
    with httpx.Client(base_url=server, headers=bearer(MANAGER), timeout=60) as http:
        compact = http.get("/dashboards/indicators", params={"period": "2026-Q1", "unit": ZONE_1}).json()
        assert compact["unit"] == {"id": ZONE_1, "name": "市一院片区", "kind": "zone"}
        assert [i["measure"] for i in compact["indicators"]] == list(measures())
        for indicator in compact["indicators"]:
            report = http.get(f"/fhir/Measure/{indicator['measure']}/$evaluate-measure",
                              params={"periodStart": "2026-01-01", "periodEnd": "2026-03-31",
                                      "organization": ZONE_1}).json()
            MeasureReport.model_validate(report)
            for figure in indicator["figures"]:
                group = _group(report, figure["code"])
                assert group.get("measureScore", {}).get("value") == figure["value"], figure
                if figure["scoring"] in ("proportion", "ratio"):
                    assert _populations(group) == {"numerator": figure["numerator"],
                                                   "denominator": figure["denominator"]}
        share = next(i for i in compact["indicators"] if i["measure"] == "primary-care-share")
        assert {c["id"]: c["figures"]["visits"]["value"] for c in share["children"]}[CHC] == 2
        units = http.get("/dashboards/units").json()["units"]
        zone = next(u for u in units if u["id"] == ZONE_1)
        assert zone["parent"] == "consortium-ks" and zone["institutions"] == 12
        assert units[0] == {"id": "", "name": "全部", "kind": "all", "parent": None, "institutions": 32}


def test_the_measures_are_fhir_resources_of_the_store(server: str, database: Database) -> None:
    assert all(line.endswith("201") for line in Dashboards(database).install_measures())
    assert all(line.endswith("200") for line in Dashboards(database).install_measures())  # no new version
    with fhir_client(server, MANAGER) as fhir:
        measure = fhir.get("/Measure/hypertension-management").json()
        listed = fhir.get("/Measure", params={"url": "urn:hub:measure:diabetes-management"}).json()
    assert measure["title"] == "高血压患者规范管理" and measure["meta"]["versionId"] == "1"
    assert listed["total"] == 1


def test_a_member_unit_sees_its_own_figures_only(data: Dashboards, server: str) -> None:
    with httpx.Client(base_url=server, headers=bearer(COMMUNITY), timeout=60) as http:
        own = http.get("/dashboards/indicators", params={"period": "2026-Q1", "measure": "primary-care-share"})
        assert own.status_code == 200, own.text
        figures = {f["code"]: f["value"] for f in own.json()["indicators"][0]["figures"]}
        assert figures["visits"] == 2  # the center's two visits, not the zone's
        assert [u["id"] for u in http.get("/dashboards/units").json()["units"]] == ["", CHC]
        assert_outcome(http.get("/dashboards/indicators", params={"period": "2026", "unit": ZONE_1}), 403,
                       contains="may not see")
    with fhir_client(server, COMMUNITY) as fhir:
        report = fhir.get("/Measure/primary-care-share/$evaluate-measure",
                          params={"periodStart": "2026-01-01", "periodEnd": "2026-03-31"}).json()
    strata = _group(report, "visits")["stratifier"][0]["stratum"]
    assert [s["value"]["coding"][0]["code"] for s in strata] == [CHC]


def test_only_roles_that_read_indicators_may_ask(data: Dashboards, server: str) -> None:
    assert_outcome(httpx.get(f"{server}/dashboards/indicators?period=2026"), 401)
    with httpx.Client(base_url=server, headers=bearer(READER), timeout=30) as http:
        assert_outcome(http.get("/dashboards/indicators", params={"period": "2026"}), 403)
        assert_outcome(http.get("/fhir/Measure/primary-care-share/$evaluate-measure",
                                params={"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}), 403)


@pytest.mark.parametrize(("path", "params", "status", "contains"), [
    ("/fhir/Measure/primary-care-share/$evaluate-measure", {"periodEnd": "2026-12-31"}, 400, "periodStart"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure", {"periodStart": "2026-13-01", "periodEnd": "2026"}, 400,
     "calendar date"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure", {"periodStart": "0001", "periodEnd": "2026"}, 400, "years"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure", {"periodStart": "2026-12-31", "periodEnd": "2026-01-01"},
     400, "after"),
    ("/fhir/Measure/nope/$evaluate-measure", {"periodStart": "2026", "periodEnd": "2026"}, 404, "Measure/nope"),
    ("/fhir/Measure/$evaluate-measure", {"periodStart": "2026", "periodEnd": "2026"}, 400, "'measure'"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure",
     {"periodStart": "2026", "periodEnd": "2026", "subject": "Patient/p-1"}, 400, "Patient"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure",
     {"periodStart": "2026", "periodEnd": "2026", "reportType": "individual"}, 400, "summary"),
    ("/fhir/Measure/primary-care-share/$evaluate-measure",
     {"periodStart": "2026", "periodEnd": "2026", "subject": "Organization/org-nowhere"}, 404, "org-nowhere"),
    ("/dashboards/indicators", {"period": "2026-13"}, 400, "month"),
    ("/dashboards/indicators", {"period": "26"}, 400, "quarter"),
    ("/dashboards/indicators", {}, 400, "period"),
    ("/dashboards/indicators", {"period": "2026", "from": "2026-01-01"}, 400, "either"),
    ("/dashboards/indicators", {"period": "2026", "unit": "x\u0007"}, 400, "control"),
    ("/dashboards/indicators", {"period": "2026", "measure": "nope"}, 404, "nope"),
])
def test_bad_input_gets_a_clear_outcome(data: Dashboards, server: str, path: str, params: dict[str, str],
                                        status: int, contains: str) -> None:
    with httpx.Client(base_url=server, headers=bearer(MANAGER), timeout=30) as http:
        assert_outcome(http.get(path, params=params), status, contains=contains)
