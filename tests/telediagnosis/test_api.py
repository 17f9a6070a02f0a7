"""Tele-diagnosis over real HTTP: configuration, a site sending an exam, the reader's worklist, claim (409 for
the loser), report, the rest-hook notification at the site's real receiver, permissions and bad input."""

from __future__ import annotations

import httpx
import pytest

from hub.auth.roles import Role
from hub.store.database import Database
from hub.subscriptions.delivery import Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher
from hub.telediagnosis.service import Telediagnosis
from tests.auth.support import principal
from tests.conftest import assert_outcome, bearer, fhir_client
from tests.subscriptions.support import owner, receiver, subscription
from tests.telediagnosis.support import CONFIG, READERS, SITE, put, region, study

ADMIN_OF_CENTER = principal(Role.READER, institutions=("org-ks-imaging",), consortia=("consortium-ks",))
OTHER_CENTER = principal(Role.READER, institutions=("org-other-imaging",))
SITE_IT = principal(Role.SOURCE_ADMIN, institutions=(SITE,))
MANAGER = principal(Role.ADMIN)
REPORT = {"resourceType": "DiagnosticReport", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}], "text": "胸部CT平扫"},
          "conclusion": "右肺上叶小结节，建议随访。"}


@pytest.fixture
def tele(server: str, database: Database) -> Telediagnosis:
    return region(database)


def client(server: str, who=ADMIN_OF_CENTER) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=server, headers=bearer(who), timeout=30)


def test_configuration_is_checked_whole_and_versioned(server: str, database: Database) -> None:
    region(database, readers=False)
    with client(server, MANAGER) as http:
        bad = CONFIG.replace("modalities: [ECG]}", "modalities: [ECG], hours: [25:00-26:00]}") + "colour: red\n"
        body = assert_outcome(http.put("/telediagnosis/config", content=bad, headers={"Content-Type": "text/yaml"}),
                              400, contains="2 problem(s)")
        assert "25:00-26:00" in body["issue"][0]["diagnostics"] and "colour" in body["issue"][0]["diagnostics"]
        unknown = CONFIG.replace("institution: org-ks-ecg", "institution: org-nowhere")
        assert_outcome(http.put("/telediagnosis/config", content=unknown, headers={"Content-Type": "text/yaml"}),
                       400, contains="org-nowhere")
        assert_outcome(http.put("/telediagnosis/config", content=b"\x00", headers={"Content-Type": "text/yaml"}),
                       400)
        assert http.put("/telediagnosis/config", content=CONFIG.replace("test-1", "test-2"),
                        headers={"Content-Type": "text/yaml"}).status_code == 200
        assert http.get("/telediagnosis/config").json()["version"] == "test-2"
        assert [v["version"] for v in http.get("/telediagnosis/config/history").json()["versions"]] == ["test-2",
                                                                                                          "test-1"]
        readers = http.put("/telediagnosis/readers", content=READERS, headers={"Content-Type": "text/yaml"})
        assert readers.json()["readers"] == 8
    with client(server, SITE_IT) as http:
        assert_outcome(http.put("/telediagnosis/config", content=CONFIG), 403)


def test_a_site_sends_an_exam_a_reader_claims_and_reports_and_the_site_is_notified(
        server: str, database: Database, tele: Telediagnosis) -> None:
    site_app = owner(database, Role.SOURCE_ADMIN, institutions=[SITE])
    matcher, deliverer = SubscriptionMatcher(database), Deliverer(database)
    with receiver() as endpoint, fhir_client(server, site_app) as site_fhir, client(server) as center:
        assert site_fhir.post("/Subscription", json=subscription(
            endpoint.url, "DiagnosticReport?status=final", payload="application/fhir+json")).status_code == 201
        assert site_fhir.post("/ImagingStudy", json={k: v for k, v in study("x").items() if k != "id"}
                              ).status_code == 201
        study_id = site_fhir.get("/ImagingStudy").json()["entry"][0]["resource"]["id"]
        with client(server, site_app) as site:
            created = site.post("/telediagnosis/tasks", json={"focus": f"ImagingStudy/{study_id}"})
            assert created.status_code == 201, created.text
            again = site.post("/telediagnosis/tasks", json={"focus": f"ImagingStudy/{study_id}"})
            assert again.status_code == 200 and again.json()["task"] == created.json()["task"]
            assert_outcome(site.post("/telediagnosis/tasks", json={"focus": "Patient/x"}), 400)
        task = created.json()
        assert task["decision"]["reader"] == "PractitionerRole/img-a" and task["state"] == "assigned"
        task_id = task["task"].split("/")[1]
        worklist = center.get("/telediagnosis/worklist", params={"reader": "PractitionerRole/img-a"})
        assert [t["task"] for t in worklist.json()["tasks"]] == [task["task"]]
        # the same worklist through FHIR search
        with fhir_client(server, ADMIN_OF_CENTER) as center_fhir:
            found = center_fhir.get("/Task", params={"owner": "PractitionerRole/img-a", "status": "ready"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [task_id]
        claimed = center.post(f"/telediagnosis/tasks/{task_id}/claim", json={"reader": "PractitionerRole/img-b"})
        assert claimed.status_code == 200 and claimed.json()["reader"] == "PractitionerRole/img-b"
        assert_outcome(center.post(f"/telediagnosis/tasks/{task_id}/claim", json={"reader": "PractitionerRole/img-a"}),
                       409, contains="claimed by another reader")
        assert_outcome(center.post(f"/telediagnosis/tasks/{task_id}/report",
                                   json={"reader": "PractitionerRole/img-b", "report": {"resourceType": "Patient"}}),
                       400, contains="DiagnosticReport")
        reported = center.post(f"/telediagnosis/tasks/{task_id}/report",
                               json={"reader": "PractitionerRole/img-b", "report": REPORT})
        assert reported.status_code == 201, reported.text
        report_ref = reported.json()["report"]
        assert matcher.run_once().deliveries == 1 and deliverer.run_once().sent == 1
        (notification,) = endpoint.requests
        bundle = httpx.Response(200, content=notification.body).json()
        assert notification.headers["x-hub-resource"].startswith(report_ref + "/_history/")
        delivered = [e["resource"] for e in bundle.get("entry", []) if e.get("resource", {}).get("resourceType")
                     == "DiagnosticReport"] or [bundle]
        assert delivered[0]["conclusion"] == "右肺上叶小结节，建议随访。"
        # the site finds the report and the completed Task among its own data
        assert site_fhir.get(f"/{report_ref}").status_code == 200
        done = site_fhir.get(f"/Task/{task_id}").json()
        assert done["status"] == "completed" and done["output"][0]["valueReference"]["reference"] == report_ref


def test_readers_act_only_for_their_own_center(server: str, tele: Telediagnosis) -> None:
    put(tele.database, study("s-1"))
    tele.run_intake()
    with client(server, MANAGER) as admin:
        [row] = admin.get("/telediagnosis/worklist", params={"center": "ks-imaging"}).json()["tasks"]
    task_id = row["task"].split("/")[1]
    with client(server, OTHER_CENTER) as other:
        assert_outcome(other.post(f"/telediagnosis/tasks/{task_id}/claim", json={"reader": "PractitionerRole/img-a"}),
                       403)
        assert_outcome(other.get("/telediagnosis/worklist", params={"center": "ks-imaging"}), 403)
        assert [r["reader"] for r in other.get("/telediagnosis/readers").json()["readers"]] == ["PractitionerRole/oth-a"]
    with client(server) as center:
        assert_outcome(center.get("/telediagnosis/worklist"), 400, contains="either reader")
        assert_outcome(center.post("/telediagnosis/tasks/nope/claim", json={"reader": "PractitionerRole/img-a"}),
                       404)
        assert_outcome(center.post(f"/telediagnosis/tasks/{task_id}/claim", json={"reader": "PractitionerRole/x"}),
                       404, contains="not a reader")
        assert_outcome(center.post("/telediagnosis/sweep"), 403)
        shift = center.post("/telediagnosis/readers/img-b/shift", json={"on_shift": False})
        assert shift.status_code == 200 and shift.json()["on_shift"] is False
        preview = center.post("/telediagnosis/route", json={"site": SITE, "modality": "CT"}).json()
        reasons = {c["reader"]: c["reason"] for c in preview["considered"]}
        assert reasons["PractitionerRole/img-b"] == "off-shift" and preview["center"] == "ks-imaging"
    with client(server, SITE_IT) as site:
        assert_outcome(site.get("/telediagnosis/worklist", params={"center": "ks-imaging"}), 403)
    with client(server, MANAGER) as admin:
        assert admin.post("/telediagnosis/sweep").json() == {"claims_expired": 0, "warned": 0, "reassigned": 0,
                                                             "escalated": 0, "queued_given": 0}


def test_figures_over_http(server: str, tele: Telediagnosis) -> None:
    put(tele.database, study("s-1"), study("s-2", modality="ECG"))
    tele.run_intake()
    today = tele.clock().astimezone().date().isoformat()
    with client(server, principal(Role.APP)) as app:
        figures = app.get("/telediagnosis/figures", params={"from": "2026-01-01", "to": "2027-12-31",
                                                             "by": "modality"})
        assert figures.status_code == 200, figures.text
        rows = {r["key"]: r for r in figures.json()["rows"]}
        assert rows["CT"]["volume"] == 1 and rows["ECG"]["open"] == 1 and figures.json()["total"]["volume"] == 2
        assert_outcome(app.get("/telediagnosis/figures", params={"from": today, "to": today, "by": "colour"}), 400)
        assert_outcome(app.get("/telediagnosis/figures", params={"from": "2026-02-01", "to": "2026-01-01"}), 400)
        assert_outcome(app.get("/telediagnosis/figures", params={"from": "0001-01-01", "to": "0011-01-01"}), 400,
                       contains="1900 to 2100")


def test_a_report_with_forbidden_text_is_refused_and_nothing_is_kept(server: str, tele: Telediagnosis) -> None:
    put(tele.database, study("s-1"))
    tele.run_intake()
    with client(server, MANAGER) as admin:
        [row] = admin.get("/telediagnosis/worklist", params={"center": "ks-imaging"}).json()["tasks"]
    task_id = row["task"].split("/")[1]
    with client(server) as center:
        assert center.post(f"/telediagnosis/tasks/{task_id}/claim", json={"reader": row["reader"]}).status_code == 200
        for text in ('"\\u0000"', '"\\ud800"'):
            body = ('{"reader": "%s", "report": {"resourceType": "DiagnosticReport", "status": "final", '
                    '"code": {"text": "CT"}, "conclusion": %s}}') % (row["reader"], text)
            assert_outcome(center.post(f"/telediagnosis/tasks/{task_id}/report", content=body,
                                       headers={"Content-Type": "application/json"}), 400)
        assert_outcome(center.post(f"/telediagnosis/tasks/{task_id}/report",
                                   json={"reader": row["reader"], "report": "not a resource"}), 400)
    with fhir_client(server) as fhir:
        assert fhir.get("/DiagnosticReport").json().get("entry", []) == []
