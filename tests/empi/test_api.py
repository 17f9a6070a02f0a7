"""The EMPI over real HTTP: $match, queries across linked sources, decisions, the review queue."""

from __future__ import annotations

import httpx
import pytest

from hub.auth.roles import Role
from hub.empi.golden import MATCH_GRADE_EXTENSION
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import assert_outcome, bearer, fhir_client
from tests.empi.support import ZHANG_WEI_ID, open_reviews, person_of, run_empi, source_patient, store

HOME = "江苏省昆山市玉山镇人民路1号"


def _observation(patient_id: str, institution: str, value: float) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "meta": {"tag": [{"system": "urn:hub:institution", "code": institution}]},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}


@pytest.fixture
def linked(database: Database, fhir: httpx.Client) -> str:
    """张伟 at two hospitals (the same ID number), a glucose result at each; returns the person."""
    store(database, source_patient("org-a", "1", "张伟", id_number=ZHANG_WEI_ID, phone="13812345678"),
          source_patient("org-b", "2", "张伟", id_number=ZHANG_WEI_ID, address=HOME),
          source_patient("org-c", "3", "李娜", birth="1992-11-03", gender="female"))
    for patient_id, institution, value in (("org-a-1", "org-a", 5.1), ("org-b-2", "org-b", 6.3),
                                           ("org-c-3", "org-c", 4.4)):
        assert fhir.post("/Observation", json=_observation(patient_id, institution, value)).status_code == 201
    run_empi(database)
    return person_of(database, "org-a-1")


def _values(bundle: dict) -> list[float]:
    return sorted(e["resource"]["valueQuantity"]["value"] for e in bundle.get("entry", [])
                  if e["resource"]["resourceType"] == "Observation")


def test_a_chain_on_one_hospital_identifier_finds_the_results_of_every_linked_source(fhir: httpx.Client,
                                                                                   linked: str) -> None:
    found = fhir.get("/Observation", params={"patient.identifier": "urn:hub:mrn:org-b|2"}).json()
    assert _values(found) == [5.1, 6.3]
    # by the citizen ID number (encrypted at rest, searched by its blind index)
    found = fhir.get("/Observation", params={"subject.identifier": f"urn:oid:2.16.156.10011.1.3|{ZHANG_WEI_ID}"}).json()
    assert _values(found) == [5.1, 6.3]
    # a reference to one source stays exact
    assert _values(fhir.get("/Observation", params={"subject": "Patient/org-a-1"}).json()) == [5.1]
    # a reference to the golden Patient covers every source
    assert _values(fhir.get("/Observation", params={"subject": f"Patient/{linked}"}).json()) == [5.1, 6.3]


def test_the_golden_patients_everything_covers_all_sources(fhir: httpx.Client, linked: str) -> None:
    bundle = fhir.get(f"/Patient/{linked}/$everything").json()
    patients = sorted(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patients == sorted([linked, "org-a-1", "org-b-2"])
    assert _values(bundle) == [5.1, 6.3]


def test_match_answers_graded_golden_patients(fhir: httpx.Client, linked: str) -> None:
    query = source_patient("org-d", "9", "張偉", id_number=ZHANG_WEI_ID)
    del query["id"]
    response = fhir.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": query}, {"name": "count", "valueInteger": 5}]})
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    [entry] = bundle["entry"]
    assert entry["resource"]["id"] == linked and entry["fullUrl"].endswith(f"/Patient/{linked}")
    assert entry["search"]["mode"] == "match" and entry["search"]["score"] == 1.0
    assert entry["search"]["extension"] == [{"url": MATCH_GRADE_EXTENSION, "valueCode": "certain"}]

    similar = source_patient("org-d", "9", "张伟", phone="+86 138 1234 5678")
    del similar["id"]
    entries = fhir.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": similar}, {"name": "onlyCertainMatches", "valueBoolean": True}]}).json()
    assert [e["resource"]["id"] for e in entries["entry"]] == [linked]
    assert 0.95 <= entries["entry"][0]["search"]["score"] < 1
    assert entries["entry"][0]["search"]["extension"][0]["valueCode"] == "probable"

    stranger = source_patient("org-d", "9", "王强", birth="1960-02-02")
    del stranger["id"]
    none = fhir.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": stranger}]}).json()
    assert none["total"] == 0 and none.get("entry", []) == []


def test_match_refuses_bad_input_with_an_operation_outcome(fhir: httpx.Client, server: str, database: Database) -> None:
    assert_outcome(fhir.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": []}), 400,
                   contains="resource")
    assert_outcome(fhir.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "gender": "robot"}}]}), 400)
    with fhir_client(server, principal(Role.APP, institutions=("org-a",))) as bound:
        assert_outcome(bound.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": {"resourceType": "Patient"}}]}), 403, contains="institution")


def test_merge_and_unmerge_change_what_queries_find(server: str, fhir: httpx.Client, database: Database,
                                                    linked: str) -> None:
    admin = {"headers": bearer(), "timeout": 30}
    other = person_of(database, "org-c-3")
    merged = httpx.post(f"{server}/empi/$merge", json={"source": other, "target": linked,
                                                       "reason": "同一人：公安户籍核实"}, **admin)
    assert merged.status_code == 200, merged.text
    assert _values(fhir.get("/Observation", params={"patient.identifier": "urn:hub:mrn:org-a|1"}).json()) == [4.4, 5.1, 6.3]
    person = httpx.get(f"{server}/empi/persons/{linked}", **admin).json()
    assert sorted(s["patient"] for s in person["sources"]) == ["org-a-1", "org-b-2", "org-c-3"]
    assert person["history"][0]["action"] == "merge" and person["history"][0]["reason"] == "同一人：公安户籍核实"
    assert all("13812345678" not in str(s) for s in person["sources"])  # phones masked
    assert any(s["summary"]["phones"] == ["138****5678"] for s in person["sources"])

    unmerged = httpx.post(f"{server}/empi/$unmerge", json={"person": other, "reason": "核实有误"}, **admin)
    assert unmerged.status_code == 200, unmerged.text
    assert _values(fhir.get("/Observation", params={"patient.identifier": "urn:hub:mrn:org-a|1"}).json()) == [5.1, 6.3]
    by_regional_id = httpx.get(f"{server}/empi/persons/{person['regional_id']}", **admin).json()
    assert by_regional_id["person"] == linked

    again = httpx.post(f"{server}/empi/$unmerge", json={"person": other, "reason": "再来"}, **admin)
    assert_outcome(again, 422, contains="not merged")
    missing_reason = httpx.post(f"{server}/empi/$merge", json={"source": other, "target": linked}, **admin)
    assert missing_reason.status_code == 400


def test_reviewers_see_possible_matches_side_by_side_and_decide(server: str, database: Database) -> None:
    store(database, source_patient("org-a", "1", "张丽", gender="female", id_number=ZHANG_WEI_ID[:-1] + "X"),
          source_patient("org-b", "2", "张莉", gender="female", phone="13912345678"),
          source_patient("org-c", "3", "张立", gender="female"))
    run_empi(database)
    reviewer = {"headers": bearer(principal(Role.GOVERNANCE)), "timeout": 30}
    listed = httpx.get(f"{server}/governance/matches", **reviewer)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    scores = [item["score"] for item in body["items"]]
    assert body["total"] == len(scores) >= 2 and scores == sorted(scores, reverse=True)
    item = body["items"][0]
    levels = {f["field"]: f["level"] for f in item["comparison"]["fields"]}
    assert levels["name"] in ("homophone", "fuzzy-pinyin", "one-character") and levels["sex"] == "same"
    assert item["record"]["name"] and item["candidate"]["sources"][0]["summary"]["name"]
    assert "13912345678" not in listed.text and ZHANG_WEI_ID[:-1] not in listed.text  # masked

    stale = httpx.post(f"{server}/governance/matches/{item['id']}/$decide",
                       json={"decision": "link", "reason": "同一人", "version": item["version"] + 1}, **reviewer)
    assert_outcome(stale, 409, contains="changed")
    decided = httpx.post(f"{server}/governance/matches/{item['id']}/$decide",
                         json={"decision": "link", "reason": "电话核实为同一人", "version": item["version"]}, **reviewer)
    assert decided.status_code == 200, decided.text
    assert person_of(database, item["record"]["id"]) == item["candidate"]["person"]
    twice = httpx.post(f"{server}/governance/matches/{item['id']}/$decide",
                       json={"decision": "not-link", "reason": "改主意", "version": item["version"] + 1}, **reviewer)
    assert_outcome(twice, 409, contains="closed")
    linked = httpx.get(f"{server}/governance/matches", params={"status": "linked"}, **reviewer).json()
    assert [i["id"] for i in linked["items"]] == [item["id"]] and linked["items"][0]["reason"] == "电话核实为同一人"

    for rest in open_reviews(database):
        response = httpx.post(f"{server}/governance/matches/{rest['id']}/$decide",
                              json={"decision": "not-link", "reason": "不是同一人", "version": rest["version"]},
                              **reviewer)
        assert response.status_code == 200, response.text
    assert open_reviews(database) == []


def test_only_governance_staff_use_the_review_api(server: str, database: Database) -> None:
    app = {"headers": bearer(principal(Role.APP)), "timeout": 30}
    assert_outcome(httpx.get(f"{server}/governance/matches", **app), 403, contains="review matches")
    assert_outcome(httpx.post(f"{server}/empi/$unlink", json={"patient": "x", "reason": "y"}, **app), 403)
    reviewer = {"headers": bearer(principal(Role.GOVERNANCE)), "timeout": 30}
    assert_outcome(httpx.get(f"{server}/governance/matches/999", **reviewer), 404)
    assert_outcome(httpx.get(f"{server}/governance/matches", params={"status": "nope"}, **reviewer), 400)
    assert_outcome(httpx.get(f"{server}/empi/persons/nobody", **reviewer), 404)


def test_links_never_show_an_institution_bound_client_another_institutions_data(server: str, linked: str) -> None:
    with fhir_client(server, principal(Role.SOURCE_ADMIN, institutions=("org-a",))) as hospital_it:
        found = hospital_it.get("/Observation", params={"patient.identifier": "urn:hub:mrn:org-a|1"}).json()
        assert _values(found) == [5.1]  # its own result only, though org-b's is linked
        assert hospital_it.get(f"/Patient/{linked}").status_code == 404  # golden Patients span institutions
        everything = hospital_it.get("/Patient/org-a-1/$everything").json()
        assert _values(everything) == [5.1]


def test_the_capability_statement_declares_match(fhir: httpx.Client) -> None:
    statement = fhir.get("/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"match", "everything"} <= {o["name"] for o in patient["operation"]}


def test_decisions_and_review_reads_are_in_the_audit_trail(server: str, database: Database) -> None:
    from tests.auth.audit_support import events_of, patients_of

    store(database, source_patient("org-a", "1", "张丽", gender="female"),
          source_patient("org-b", "2", "张莉", gender="female"))
    run_empi(database)
    reviewer = principal(Role.GOVERNANCE, client_id="audited-reviewer")
    with httpx.Client(base_url=server, headers=bearer(reviewer), timeout=30) as client:
        [item] = client.get("/governance/matches").json()["items"]
        assert client.post(f"/governance/matches/{item['id']}/$decide", json={
            "decision": "not-link", "reason": "姐妹", "version": item["version"]}).status_code == 200
    listed, decided = events_of(database, "audited-reviewer", 2)
    assert {"Patient/org-a-1", "Patient/org-b-2"} <= set(patients_of(listed))
    assert "Patient/org-b-2" in patients_of(decided)
    assert decided["outcome"] == "0"
