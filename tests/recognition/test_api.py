"""Recognition over real HTTP: catalogue and EQA management, the HR mark on reads and searches, checks,
CDS Hooks (shapes validated against the specification's), feedback, decisions and figures."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from hub.auth.roles import Role
from hub.fhir.instants import now_utc
from hub.fhir.search_values import local_zone
from hub.recognition.service import Recognition
from hub.store.database import Database
from tests.auth.audit_support import events_of, patients_of
from tests.auth.support import principal
from tests.conftest import assert_outcome, bearer
from tests.recognition import cds_schemas
from tests.recognition.support import (
    CATALOGUE,
    COMMUNITY_B,
    FAILED_LAB,
    HOSPITAL_A,
    LOINC,
    YEARS,
    ago,
    consortium,
    glucose,
    put,
    zhang_wei,
)

CDS_CLIENT = principal(Role.CLINICIAN_CDS, institutions=(COMMUNITY_B,))
GOVERNANCE = principal(Role.GOVERNANCE)


@pytest.fixture
def hub(server: str, database: Database, terminology: None) -> Recognition:
    return consortium(database)


def client(server: str, who=CDS_CLIENT) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=server, headers=bearer(who), timeout=30)


def hook_request(patient_id: str, orders: list[dict], hook: str = "order-sign", prefetch: dict | None = None,
                 **context: object) -> dict:
    request: dict = {"hook": hook, "hookInstance": str(uuid.uuid4()), "fhirServer": "https://his.example/fhir",
               "context": {"userId": "Practitioner/dr-li", "patientId": patient_id,
                           "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                           "entry": [{"resource": o} for o in orders]}, **context}}
    if prefetch is not None:
        request["prefetch"] = prefetch
    cds_schemas.validate(request, cds_schemas.REQUEST)
    return request


def order(order_id: str, code: str = "2345-7", system: str = LOINC) -> dict:
    return {"resourceType": "ServiceRequest", "id": order_id, "status": "draft", "intent": "order",
            "code": {"coding": [{"system": system, "code": code}]}, "subject": {"reference": "Patient/x"}}


def tags(server: str, resource_id: str) -> set[str]:
    with client(server, principal(Role.ADMIN)) as http:
        resource = http.get(f"/fhir/Observation/{resource_id}").json()
    return {t["code"] for t in resource["meta"].get("tag", []) if t["system"] == "urn:hub:recognition"}


def test_results_carry_hr_on_reads_and_searches_and_eqa_changes_remark_them(server: str, database: Database,
                                                                          hub: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)),
        glucose("glu-tcm", patient_b, FAILED_LAB, 5.9, "mmol/L", ago(days=1)))
    assert tags(server, "glu-a") == {"HR"} and tags(server, "glu-tcm") == set()
    with client(server, principal(Role.ADMIN)) as http:
        found = http.get("/fhir/Observation", params={"_tag": "urn:hub:recognition|HR"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == ["glu-a"]
        # a writer cannot mark its own result HR
        forged = glucose("glu-forged", patient_b, FAILED_LAB, 6.0, "mmol/L", ago(days=1))
        forged["meta"]["tag"].append({"system": "urn:hub:recognition", "code": "HR"})
        assert http.put("/fhir/Observation/glu-forged", json=forged,
                        headers={"Content-Type": "application/fhir+json"}).status_code == 201
    assert tags(server, "glu-forged") == set()

    with client(server, GOVERNANCE) as http:  # the failed lab passes a re-assessment
        response = http.post("/recognition/eqa", json={"records": [
            {"institution": FAILED_LAB, "item": "glu", "year": year, "passed": True, "certificate": "JS-2026-88"}
            for year in YEARS]})
        assert response.status_code == 200, response.text
        assert response.json()["remarked"]["updated"] == 2
        assert tags(server, "glu-tcm") == {"HR"} and tags(server, "glu-forged") == {"HR"}
        records = http.get("/recognition/eqa", params={"institution": FAILED_LAB}).json()["records"]
        assert [(r["year"], r["passed"], r["certificate"]) for r in records] == [
            (year, True, "JS-2026-88") for year in YEARS]
        for record in records:
            assert http.delete(f"/recognition/eqa/{record['id']}").status_code == 200
    assert tags(server, "glu-tcm") == set()


def test_catalogue_is_managed_as_data_and_bad_catalogues_change_nothing(server: str, hub: Recognition) -> None:
    with client(server, GOVERNANCE) as http:
        catalogue = http.get("/recognition/catalogue").json()
        assert catalogue["version"] == "2026.12" and catalogue["loaded_by"] == "test"
        glu = next(i for i in catalogue["items"] if i["id"] == "glu")
        assert glu == {"id": "glu", "name": "葡萄糖", "category": "临床化学", "code": f"{LOINC}|2345-7",
                       "kind": "lab", "validity": "7d", "scope": "consortium", "qualification": "eqa",
                       "unit": "mmol/L", "price": "5.00"}
        bad = ("version: x\nitems:\n  - {id: a, code: 'http://loinc.org|0000-0'}\n"
               "  - {id: b, code: nocode, validity: 3w, scope: world, qualification: level:huge, price: -1}\n")
        response = http.put("/recognition/catalogue", content=bad.encode(),
                            headers={"Content-Type": "application/yaml"})
        body = assert_outcome(response, 400)
        text = body["issue"][0]["diagnostics"]
        for expected in ("code must be 'system|code'", "validity '3w'", "scope 'world'", "qualification 'level:huge'",
                         "price '-1'"):
            assert expected in text
        unknown = http.put("/recognition/catalogue", content=b"version: x\nitems:\n  - {id: a, code: 'http://loinc.org|0000-0', validity: 7d}\n",
                           headers={"Content-Type": "application/yaml"})
        assert_outcome(unknown, 400, contains="0000-0 is not a code of http://loinc.org")
        assert http.get("/recognition/catalogue").json()["version"] == "2026.12"
        assert http.put("/recognition/catalogue", content=CATALOGUE.read_bytes(),
                        headers={"Content-Type": "application/yaml"}).json()["changed_items"] == 0
        nan = http.put("/recognition/catalogue", content=b"version: x\nitems:\n  - {id: a, code: 'http://loinc.org|2345-7', "
                                                         b"validity: 7d, price: .nan}\n",
                       headers={"Content-Type": "application/yaml"})
        assert_outcome(nan, 400, contains="price 'nan'")
        twice = {"institution": HOSPITAL_A, "item": "glu", "year": YEARS[0], "passed": True}
        assert_outcome(http.post("/recognition/eqa", json={"records": [twice, {**twice, "passed": False}]}), 400,
                       contains="records 1 and 2")
        history = http.get("/recognition/catalogue/history").json()["versions"]
        assert [v["version"] for v in history] == ["2026.12", "2026.12"] and history[0]["items"] == 22
    with client(server) as http:  # a clinician's system may not change the catalogue
        assert_outcome(http.put("/recognition/catalogue", content=CATALOGUE.read_bytes(),
                                headers={"Content-Type": "application/yaml"}), 403)


def test_cds_hooks_discovery_cards_and_feedback(server: str, database: Database, hub: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 100.9, "mg/dL", ago(days=2)))
    with client(server) as http:
        discovery = http.get("/cds-services").json()
        cds_schemas.validate(discovery, cds_schemas.DISCOVERY)
        assert {s["hook"] for s in discovery["services"]} == {"order-select", "order-sign"}

        # the ordering system knows the patient by its own record number (prefetched Patient)
        prefetch = {"patient": {"resourceType": "Patient", "id": "ehr-1",
                                "identifier": [{"system": f"urn:hub:mrn:{COMMUNITY_B}", "value": "B77"}]}}
        request = hook_request("ehr-1", [order("sr-1"), order("sr-2", "2093-3")], prefetch=prefetch)
        response = http.post("/cds-services/hr-order-sign", json=request)
        assert response.status_code == 200, response.text
        cards = response.json()
        cds_schemas.validate(cards, cds_schemas.RESPONSE)
        [card] = cards["cards"]  # no cholesterol result: one card
        assert card["indicator"] == "warning" and "葡萄糖" in card["summary"] and "昆山市第一人民医院" in card["summary"]
        assert "5.601 mmol/L" in card["detail"] and "links" not in card  # the result is in the card itself
        cancel, keep = card["suggestions"]
        assert cancel["label"] == "取消本次申请" and cancel["actions"][0] == {
            "type": "delete", "description": "取消重复的葡萄糖申请，互认既往结果", "resourceId": ["ServiceRequest/sr-1"]}
        assert keep["label"] == "仍然开立"
        assert [r["display"] for r in card["overrideReasons"]] == [
            "病情变化", "检查检验结果在疾病进展中变化快", "对疾病诊疗意义重大（如手术、输血前）", "急诊、急救等抢救患者",
            "司法、伤残、病退等鉴定", "其他情形"]

        # order-select checks only the orders just selected
        select = hook_request(f"{patient_b}", [order("sr-1"), order("sr-3")], hook="order-select",
                              selections=["ServiceRequest/sr-3"])
        assert len(http.post("/cds-services/hr-order-select", json=select).json()["cards"]) == 1
        wrong = http.post("/cds-services/hr-order-select", json={**select, "hook": "order-sign"})
        assert_outcome(wrong, 400, contains="answers the hook 'order-select'")

        feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                                  "overrideReason": {"reason": card["overrideReasons"][0], "userComment": "术前复查"},
                                  "outcomeTimestamp": now_utc().isoformat()}]}
        cds_schemas.validate(feedback, cds_schemas.FEEDBACK)
        response = http.post("/cds-services/hr-order-sign/feedback", json=feedback)
        assert response.status_code == 200, response.text
        assert response.json()["recorded"][0]["reason"] == "condition-changed"
        # the ordering system may report an override without its reason: kept, counted as unspecified
        no_reason = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                                   "outcomeTimestamp": now_utc().isoformat()}]}
        assert http.post("/cds-services/hr-order-sign/feedback", json=no_reason).json()["recorded"][0][
            "reason"] == "unspecified"
        keep = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": keep["uuid"]}],
                              "outcomeTimestamp": now_utc().isoformat()}]}
        assert http.post("/cds-services/hr-order-sign/feedback", json=keep).json()["recorded"][0][
            "decision"] == "retested"
        accepted = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                                  "acceptedSuggestions": [{"id": cancel["uuid"]}],
                                  "outcomeTimestamp": now_utc().isoformat()}]}
        assert http.post("/cds-services/hr-order-sign/feedback", json=accepted).json()["recorded"][0][
            "decision"] == "recognized"
        record = http.get(f"/recognition/checks/{card['uuid']}").json()
    assert record["decision"] == "recognized" and record["order_ref"] == "ServiceRequest/sr-1"
    assert [(d["decision"], d["reason"]) for d in record["decisions"]] == [
        ("retested", "condition-changed"), ("retested", "unspecified"), ("retested", "unspecified"), ("recognized", None)]
    assert record["decisions"][0]["comment"] == "术前复查"


def test_cds_hooks_orders_are_counted_once_and_bad_requests_get_400(server: str, database: Database,
                                                                   hub: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=2)))
    local_first = {"resourceType": "ServiceRequest", "id": "sr-9", "status": "draft", "intent": "order",
                   "code": {"coding": [{"system": "urn:hub:code:chc-his:lab-item", "code": "UNMAPPED"},
                                       {"system": LOINC, "code": "2345-7"}]}}
    no_id = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": LOINC, "code": "2345-7"}]}}
    with client(server) as http:
        select = hook_request(patient_b, [local_first], hook="order-select", selections=["ServiceRequest/sr-9"])
        [first] = http.post("/cds-services/hr-order-select", json=select).json()["cards"]  # the 2nd coding is the item
        [again] = http.post("/cds-services/hr-order-sign", json=hook_request(patient_b, [local_first])).json()["cards"]
        assert http.get(f"/recognition/checks/{first['uuid']}").status_code == 404  # replaced: the order counts once
        decided = {"feedback": [{"card": again["uuid"], "outcome": "accepted", "outcomeTimestamp": now_utc().isoformat(),
                                 "acceptedSuggestions": [{"id": again["suggestions"][0]["uuid"]}]}]}
        assert http.post("/cds-services/hr-order-sign/feedback", json=decided).status_code == 200
        assert http.post("/cds-services/hr-order-sign", json=hook_request(patient_b, [local_first])).json() == {
            "cards": []}  # decided already: no second card
        [card] = http.post("/cds-services/hr-order-sign", json=hook_request(patient_b, [no_id])).json()["cards"]
        assert "actions" not in card["suggestions"][0]  # nothing to delete without the order's id
        for broken in ({"draftOrders": {"resourceType": "Bundle", "entry": {"resource": 1}}},
                       {"draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {
                           "resourceType": "ServiceRequest", "id": "x", "code": {"coding": "2345-7"}}}]}},
                       {"draftOrders": []}):
            request = hook_request(patient_b, [])
            request["context"].update(broken)
            assert_outcome(http.post("/cds-services/hr-order-sign", json=request), 400)
        for feedback in ({"feedback": [{"card": first["uuid"], "outcome": "accepted", "acceptedSuggestions": "all"}]},
                         {"feedback": [{"card": first["uuid"], "outcome": "overridden",
                                        "overrideReason": {"reason": {"code": ["emergency"]}}}]},
                         {"feedback": [{"card": first["uuid"], "outcome": "maybe"}]}, {"feedback": []}):
            assert_outcome(http.post("/cds-services/hr-order-sign/feedback", json=feedback), 400)


def test_decisions_and_figures(server: str, database: Database, hub: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    checks = []
    with client(server) as http:
        for _ in range(4):
            response = http.post("/recognition/check", json={"patient": f"Patient/{patient_b}",
                                                             "code": f"{LOINC}|2345-7"})
            assert response.status_code == 200, response.text
            checks.append(response.json()["check"])
        # an order time without a zone is local time: the result of a day ago is 24 h old, not 16
        local = now_utc().astimezone(local_zone()).replace(tzinfo=None).isoformat()
        at_local = http.post("/recognition/check", json={"patient": f"Patient/{patient_b}", "code": f"{LOINC}|2345-7",
                                                         "at": local}).json()
        assert 23.9 <= at_local["recognizable"][0]["age_hours"] <= 24.1
        checks.append(at_local["check"])
        none = http.post("/recognition/check", json={"patient": f"Patient/{patient_b}", "code": f"{LOINC}|2093-3"})
        assert none.json()["recognizable"] == [] and none.json()["item"]["id"] == "tc"
        assert_outcome(http.post("/recognition/check", json={"patient": f"Patient/{patient_b}", "code": f"{LOINC}|2345-7",
                                                             "institution": HOSPITAL_A}), 403)
        decide = [("recognized", None, None), ("recognized", None, None), ("retested", "emergency", None),
                  ("retested", "other", "家属要求复查"), ("recognized", None, None)]
        for check_id, (decision, reason, comment) in zip(checks, decide, strict=True):
            response = http.post(f"/recognition/checks/{check_id}/decision",
                                 json={"decision": decision, "reason": reason, "comment": comment})
            assert response.status_code == 200, response.text
        assert_outcome(http.post(f"/recognition/checks/{checks[0]}/decision",
                                 json={"decision": "retested", "reason": "other"}), 400, contains="needs a comment")
        assert_outcome(http.post(f"/recognition/checks/{none.json()['check']}/decision",
                                 json={"decision": "recognized"}), 422)
        assert_outcome(http.post(f"/recognition/checks/{uuid.uuid4()}/decision", json={"decision": "recognized"}), 404)
        assert_outcome(http.get("/recognition/figures", params={"from": "2026-01-01", "to": "2026-12-31"}), 403)
    today = now_utc().astimezone(local_zone()).date().isoformat()  # checks are summed per local day
    with client(server, GOVERNANCE) as http:
        figures = http.get("/recognition/figures", params={"from": today, "to": today, "period": "total"}).json()
        [row] = figures["rows"]
        assert row["institution"] == COMMUNITY_B and row["name"] == "玉山镇社区卫生服务中心"
        assert (row["checks"], row["eligible"], row["recognized"], row["retested"]) == (6, 5, 3, 2)
        assert row["recognition_rate"] == 0.6 and row["avoided_tests"] == 3 and row["avoided_cost"] == "15.00"
        assert row["retests_by_reason"]["emergency"] == 1 and row["retests_by_reason"]["other"] == 1
        assert row["items"]["glu"] == {"eligible": 5, "recognized": 3}
        listed = http.get("/recognition/checks", params={"from": today, "to": today, "decision": "retested"}).json()
        assert listed["total"] == 2 and {c["reason"] for c in listed["checks"]} == {"emergency", "other"}
        by_consortium = http.get("/recognition/figures", params={"from": today, "to": today, "by": "consortium"}).json()
        assert [r["consortium"] for r in by_consortium["rows"]] == ["consortium-ks"]
        assert_outcome(http.get("/recognition/figures", params={"from": today, "to": today, "period": "week"}), 400)
    # a downstream dashboard limited to a consortium sees its institutions' figures only
    for consortium_id, rows in (("consortium-ks", 1), ("consortium-other", 0)):
        with client(server, principal(Role.APP, consortia=(consortium_id,))) as http:
            found = http.get("/recognition/figures", params={"from": today, "to": today, "period": "total"}).json()
            assert len(found["rows"]) == rows


def test_checks_are_audited_with_the_patients_they_reveal(server: str, database: Database, hub: Recognition) -> None:
    zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    auditor = principal(Role.CLINICIAN_CDS, institutions=(COMMUNITY_B,), client_id=f"cds-{uuid.uuid4().hex[:8]}")
    with client(server, auditor) as http:
        response = http.post("/recognition/check", json={"patient": f"urn:hub:mrn:{COMMUNITY_B}|B77",
                                                         "code": f"{LOINC}|2345-7"})
        assert response.status_code == 200, response.text
    [person] = [p["reference"] for p in response.json()["patients"]]
    [event] = events_of(database, auditor.client_id, 1)
    assert person in patients_of(event) and event["outcome"] == "0"


def test_a_cds_call_is_audited_with_the_hub_patients_not_the_callers_ids(server: str, database: Database,
                                                                        hub: Recognition) -> None:
    zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    auditor = principal(Role.CLINICIAN_CDS, institutions=(COMMUNITY_B,), client_id=f"cds-{uuid.uuid4().hex[:8]}")
    prefetch = {"patient": {"resourceType": "Patient", "id": "ehr-1",
                            "identifier": [{"system": f"urn:hub:mrn:{COMMUNITY_B}", "value": "B77"}]}}
    with client(server, auditor) as http:
        response = http.post("/cds-services/hr-order-sign", json=hook_request("ehr-1", [order("sr-1")],
                                                                               prefetch=prefetch))
        assert len(response.json()["cards"]) == 1
    [event] = events_of(database, auditor.client_id, 1)
    person = hub.check_record(response.json()["cards"][0]["uuid"])["person"]  # type: ignore[index]
    assert patients_of(event) == [f"Patient/{person}"]


def test_large_remarkings_run_in_the_background(server: str, database: Database, hub: Recognition,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-tcm", patient_b, FAILED_LAB, 5.9, "mmol/L", ago(days=1)))
    monkeypatch.setattr("hub.recognition.marker.SYNC_REMARK", 0)  # every re-marking counts as large
    with client(server, GOVERNANCE) as http:
        response = http.post("/recognition/eqa", json={"records": [
            {"institution": FAILED_LAB, "item": "glu", "year": year, "passed": True} for year in YEARS]})
        assert response.status_code == 200 and response.json()["remarked"] == {"running": True, "items": 1,
                                                                               "results": 1}
        deadline = time.monotonic() + 30
        while http.get("/recognition/remark").json()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        status = http.get("/recognition/remark").json()
    assert status["last"] == {"examined": 1, "updated": 1, "items": 1, "failed": None}
    assert tags(server, "glu-tcm") == {"HR"}


def test_control_characters_are_refused_not_stored(server: str, database: Database, hub: Recognition) -> None:
    """PostgreSQL cannot store a NUL: every text that reaches a query or a row is checked first (400, not 500)."""
    patient_b = zhang_wei(database)
    with client(server, principal(Role.ADMIN)) as http:
        for path, params in (("/recognition/eqa", {"institution": "\x00"}), ("/recognition/eqa", {"item": "a\x00"}),
                             ("/recognition/checks", {"from": "2026-01-01", "to": "2026-01-02", "reason": "\x00"}),
                             ("/recognition/checks/%00", {})):
            assert_outcome(http.get(path, params=params), 400, contains="control characters")
        assert_outcome(http.post("/recognition/checks/%00/decision", json={"decision": "recognized"}), 400)
        request = hook_request(patient_b, [order("sr-\x00")])
        request["context"]["userId"] = "Practitioner/\x00"
        assert_outcome(http.post("/cds-services/hr-order-sign", json=request), 400, contains="control character")
        feedback = {"feedback": [{"card": "\x00", "outcome": "accepted"}]}
        assert_outcome(http.post("/cds-services/hr-order-sign/feedback", json=feedback), 400)
        assert_outcome(http.post("/recognition/eqa", json={"records": [
            {"institution": "\x00", "item": "glu", "year": 2026, "passed": True}]}), 400)
        catalogue = b'{"version": "\\u0000", "items": [{"id": "a", "code": "http://loinc.org|2345-7", "validity": "7d"}]}'
        assert_outcome(http.put("/recognition/catalogue", content=catalogue,
                                headers={"Content-Type": "application/json"}), 400, contains="control characters")
