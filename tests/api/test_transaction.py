"""Transaction (atomic) and batch (independent) Bundles."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from hub.fhir.service import FhirService
from tests.conftest import MRN, assert_outcome, patient, with_mrn


def _entry(method: str, url: str, resource: dict | None = None, full_url: str | None = None, **request: str) -> dict:
    entry: dict = {"request": {"method": method, "url": url, **request}}
    if resource is not None:
        entry["resource"] = resource
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def _bundle(kind: str, *entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _observation(subject: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "空腹血糖"},
            "subject": {"reference": subject}, "valueQuantity": {"value": 6.1, "unit": "mmol/L"}}


def test_transaction_resolves_urn_uuid_references(fhir: httpx.Client) -> None:
    patient_urn = "urn:uuid:6f1c2c8e-0b7a-4e0c-9a51-1b2d3c4e5f60"
    bundle = _bundle(
        "transaction",
        _entry("POST", "Observation", _observation(patient_urn), "urn:uuid:0c0c0c0c-1111-4222-8333-444455556666"),
        _entry("POST", "Patient", patient(), patient_urn),
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    obs_location = result["entry"][0]["response"]["location"]
    patient_location = result["entry"][1]["response"]["location"]
    patient_ref = "/".join(patient_location.split("/")[:2])
    observation = fhir.get("/" + "/".join(obs_location.split("/")[:2])).json()
    assert observation["subject"]["reference"] == patient_ref
    assert fhir.get("/" + patient_ref).status_code == 200


def test_invalid_entry_is_named_and_nothing_is_written(fhir: httpx.Client) -> None:
    existing = fhir.put("/Patient/keep-me", json=patient(id="keep-me")).json()
    changed = dict(existing, active=True)
    bundle = _bundle(
        "transaction",
        _entry("POST", "Patient", patient(identifier=[{"system": MRN, "value": "T1"}])),
        _entry("PUT", "Patient/keep-me", changed),
        _entry("POST", "Observation", {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}),
    )
    body = assert_outcome(fhir.post("", json=bundle), 400, contains="Bundle.entry[2]")
    assert any("Bundle.entry[2].resource.status" in i.get("expression", []) for i in body["issue"])
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|T1"}).json()["total"] == 0
    assert fhir.get("/Patient/keep-me").json()["meta"]["versionId"] == "1"
    assert fhir.get("/_history").json()["total"] == 1


def test_failure_after_writes_rolls_back_every_entry(fhir: httpx.Client) -> None:
    fhir.put("/Patient/stale", json=patient(id="stale"))
    bundle = _bundle(
        "transaction",
        _entry("POST", "Patient", with_mrn("AFTER")),  # written first (POST phase)
        _entry("DELETE", "Patient/stale"),  # written before that (DELETE phase)
        _entry("PUT", "Patient/early", patient(id="early")),  # runs before the failing PUT (target order)
        _entry("PUT", "Patient/stale", patient(id="stale", active=True), ifMatch='W/"9"'),  # 412 last
    )
    assert_outcome(fhir.post("", json=bundle), 400, contains="only once")
    bundle["entry"].pop(1)  # without the overlapping delete: the PUT's stale If-Match fails after the writes
    body = assert_outcome(fhir.post("", json=bundle), 412, contains="Bundle.entry[2]")
    assert body["issue"][0]["expression"] == ["Bundle.entry[2]"]
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|AFTER"}).json()["total"] == 0
    assert fhir.get("/Patient/early").status_code == 404
    assert fhir.get("/Patient/stale").json()["meta"]["versionId"] == "1"


def test_transaction_processing_order_and_outcomes(fhir: httpx.Client) -> None:
    fhir.put("/Patient/to-delete", json=patient(id="to-delete"))
    fhir.put("/Patient/to-read", json=patient(id="to-read"))
    bundle = _bundle(
        "transaction",
        _entry("GET", "Patient/to-read"),
        _entry("PUT", "Patient/new-one", patient(id="new-one")),
        _entry("POST", "Patient", patient()),
        _entry("DELETE", "Patient/to-delete"),
    )
    result = fhir.post("", json=bundle).json()
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["200 OK", "201 Created", "201 Created", "200 OK"]  # in the request's order
    assert result["entry"][0]["resource"]["id"] == "to-read"
    assert_outcome(fhir.get("/Patient/to-delete"), 410)


def test_transaction_conditional_entries_and_references(fhir: httpx.Client) -> None:
    org = fhir.post("/Organization", json={"resourceType": "Organization", "name": "昆山市第一人民医院",
                                             "identifier": [{"system": "urn:uscc", "value": "12320583466"}]}).json()
    existing = fhir.post("/Patient", json=patient(identifier=[{"system": MRN, "value": "C1"}])).json()
    bundle = _bundle(
        "transaction",
        _entry("POST", "Patient", patient(identifier=[{"system": MRN, "value": "C1"}]),
               "urn:uuid:11111111-1111-4111-8111-111111111111", ifNoneExist=f"identifier={MRN}|C1"),
        _entry("PUT", f"Patient?identifier={MRN}|C2",
               patient(identifier=[{"system": MRN, "value": "C2"}],
                       managingOrganization={"reference": "Organization?identifier=urn:uscc|12320583466"}),
               "urn:uuid:22222222-2222-4222-8222-222222222222"),
        _entry("POST", "Observation", _observation("urn:uuid:11111111-1111-4111-8111-111111111111")),
        _entry("POST", "Observation", _observation("urn:uuid:22222222-2222-4222-8222-222222222222")),
    )
    result = fhir.post("", json=bundle)
    assert result.status_code == 200, result.text
    entries = result.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"  # matched, not created
    assert entries[0]["response"]["location"].startswith(f"Patient/{existing['id']}/")
    assert entries[1]["response"]["status"] == "201 Created"
    c2_id = entries[1]["response"]["location"].split("/")[1]
    c2 = fhir.get(f"/Patient/{c2_id}").json()
    assert c2["managingOrganization"]["reference"] == f"Organization/{org['id']}"
    obs1 = fhir.get("/Observation/" + entries[2]["response"]["location"].split("/")[1]).json()
    obs2 = fhir.get("/Observation/" + entries[3]["response"]["location"].split("/")[1]).json()
    assert obs1["subject"]["reference"] == f"Patient/{existing['id']}"
    assert obs2["subject"]["reference"] == f"Patient/{c2_id}"


def test_transaction_reference_errors(fhir: httpx.Client) -> None:
    dangling = _bundle("transaction", _entry("POST", "Observation", _observation("urn:uuid:0000-missing")))
    assert_outcome(fhir.post("", json=dangling), 400, contains="matches no fullUrl")
    conditional = _bundle("transaction", _entry("POST", "Observation", _observation(f"Patient?identifier={MRN}|none")))
    assert_outcome(fhir.post("", json=conditional), 400, contains="matches no resource")
    twice = _bundle("transaction", _entry("PUT", "Patient/p1", patient(id="p1")),
                    _entry("DELETE", "Patient/p1"))
    assert_outcome(fhir.post("", json=twice), 400, contains="only once")
    assert fhir.get("/_history").json()["total"] == 0


def test_transaction_patch_entry(fhir: httpx.Client) -> None:
    fhir.put("/Patient/pp", json=patient(id="pp"))
    ops = json.dumps([{"op": "replace", "path": "/gender", "value": "female"}]).encode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(ops).decode()}
    result = fhir.post("", json=_bundle("transaction", _entry("PATCH", "Patient/pp", binary)))
    assert result.status_code == 200, result.text
    assert fhir.get("/Patient/pp").json()["gender"] == "female"


def test_transaction_returns_resources_when_asked(fhir: httpx.Client) -> None:
    bundle = _bundle("transaction", _entry("POST", "Patient", patient()))
    minimal = fhir.post("", json=bundle, headers={"Prefer": "return=minimal"}).json()
    assert "resource" not in minimal["entry"][0]
    full = fhir.post("", json=bundle, headers={"Prefer": "return=representation"}).json()
    assert full["entry"][0]["resource"]["resourceType"] == "Patient"


def test_batch_entry_that_fails_after_writing_is_rolled_back_alone(
    fhir: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FhirService.update

    def update_then_fail(self: FhirService, resource_type: str, resource_id: str, *args: Any, **kwargs: Any) -> Any:
        outcome = original(self, resource_type, resource_id, *args, **kwargs)
        if resource_id == "boom":
            raise RuntimeError("failure after the write")
        return outcome

    monkeypatch.setattr(FhirService, "update", update_then_fail)
    bundle = _bundle("batch", _entry("POST", "Patient", with_mrn("BATCH-A")),
                     _entry("PUT", "Patient/boom", patient(id="boom")),
                     _entry("PUT", "Patient/fine", patient(id="fine")))
    result = fhir.post("", json=bundle)
    assert result.status_code == 200
    entries = result.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "500 Internal Server Error", "201 Created"]
    assert entries[1]["response"]["outcome"]["issue"][0]["code"] == "exception"
    assert fhir.get("/Patient/boom").status_code == 404  # its savepoint was rolled back
    assert fhir.get("/Patient/fine").status_code == 200
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|BATCH-A"}).json()["total"] == 1


def test_batch_entries_are_independent(fhir: httpx.Client) -> None:
    fhir.put("/Patient/b-read", json=patient(id="b-read"))
    bundle = _bundle(
        "batch",
        _entry("POST", "Patient", patient(identifier=[{"system": MRN, "value": "B1"}])),
        _entry("POST", "Observation", {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}),
        _entry("GET", "Patient/b-read"),
        _entry("GET", "Patient/b-missing"),
        _entry("PUT", "Patient/b-new", patient(id="b-new")),
        {"request": {"method": "POST"}},
    )
    response = fhir.post("", json=bundle)
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "200 OK", "404 Not Found", "201 Created", "400 Bad Request"]
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert result["entry"][2]["resource"]["id"] == "b-read"
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|B1"}).json()["total"] == 1
    assert fhir.get("/Patient/b-new").status_code == 200


def test_bundle_shape_errors(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("", json={"resourceType": "Bundle", "type": "collection"}), 400, contains="transaction")
    assert_outcome(fhir.post("", json=patient()), 400, contains="Bundle")
    missing_request = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": patient()}]}
    assert_outcome(fhir.post("", json=missing_request), 400, contains="request")
    bad_method = _bundle("transaction", _entry("TRACE", "Patient"))
    assert_outcome(fhir.post("", json=bad_method), 400, contains="method")



def test_deletes_run_before_conditional_creates_are_resolved(fhir: httpx.Client) -> None:
    fhir.put("/Patient/d1", json=with_mrn("D1", id="d1"))
    bundle = _bundle(
        "transaction",
        _entry("POST", "Observation", _observation("urn:uuid:aaaaaaaa-0000-4000-8000-000000000001")),
        _entry("POST", "Patient", with_mrn("D1", gender="female"), "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001",
               ifNoneExist=f"identifier={MRN}|D1"),
        _entry("DELETE", "Patient/d1"),
    )
    result = fhir.post("", json=bundle)
    assert result.status_code == 200, result.text
    entries = result.json()["entry"]
    assert entries[1]["response"]["status"] == "201 Created"
    new_id = entries[1]["response"]["location"].split("/")[1]
    assert new_id != "d1"
    observation = fhir.get("/Observation/" + entries[0]["response"]["location"].split("/")[1]).json()
    assert observation["subject"]["reference"] == f"Patient/{new_id}"
    assert fhir.get(f"/Patient/{new_id}").json()["gender"] == "female"


def test_one_bundle_never_creates_one_patient_twice(fhir: httpx.Client) -> None:
    criteria = f"identifier={MRN}|DUP"
    bundle = _bundle(
        "transaction",
        _entry("POST", "Patient", with_mrn("DUP"), "urn:uuid:bbbbbbbb-0000-4000-8000-000000000001",
               ifNoneExist=criteria),
        _entry("POST", "Patient", with_mrn("DUP"), "urn:uuid:bbbbbbbb-0000-4000-8000-000000000002",
               ifNoneExist=criteria),
        _entry("POST", "Observation", _observation("urn:uuid:bbbbbbbb-0000-4000-8000-000000000001")),
        _entry("POST", "Observation", _observation("urn:uuid:bbbbbbbb-0000-4000-8000-000000000002")),
        _entry("POST", "Observation", _observation(f"Patient?identifier={MRN}|DUP")),
    )
    result = fhir.post("", json=bundle)
    assert result.status_code == 200, result.text
    entries = result.json()["entry"]
    assert [e["response"]["status"] for e in entries[:2]] == ["201 Created", "200 OK"]
    assert entries[0]["response"]["location"] == entries[1]["response"]["location"]
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|DUP"}).json()["total"] == 1
    pid = entries[0]["response"]["location"].split("/")[1]
    subjects = {fhir.get("/Observation/" + e["response"]["location"].split("/")[1]).json()["subject"]["reference"]
                for e in entries[2:]}
    assert subjects == {f"Patient/{pid}"}


def test_conditional_reference_to_a_patient_created_in_the_same_bundle(fhir: httpx.Client) -> None:
    bundle = _bundle(
        "transaction",
        _entry("POST", "Observation", _observation(f"Patient?identifier={MRN}|NEW9")),
        _entry("POST", "Patient", with_mrn("NEW9")),
    )
    result = fhir.post("", json=bundle)
    assert result.status_code == 200, result.text
    entries = result.json()["entry"]
    pid = entries[1]["response"]["location"].split("/")[1]
    observation = fhir.get("/Observation/" + entries[0]["response"]["location"].split("/")[1]).json()
    assert observation["subject"]["reference"] == f"Patient/{pid}"


def test_repeated_full_url_and_overlapping_conditional_delete_are_refused(fhir: httpx.Client) -> None:
    same = "urn:uuid:cccccccc-0000-4000-8000-000000000001"
    repeated = _bundle("transaction", _entry("POST", "Patient", patient(), same), _entry("POST", "Patient", patient(), same))
    assert_outcome(fhir.post("", json=repeated), 400, contains="repeats the fullUrl")
    fhir.put("/Patient/d4", json=with_mrn("D4", id="d4"))
    overlap = _bundle("transaction", _entry("DELETE", f"Patient?identifier={MRN}|D4"),
                      _entry("PUT", "Patient/d4", with_mrn("D4", id="d4", active=True)))
    assert_outcome(fhir.post("", json=overlap), 400, contains="only once")
    assert fhir.get("/Patient/d4").json()["meta"]["versionId"] == "1"
    with_query = _bundle("transaction", _entry("PUT", "Patient/d4?active=true", with_mrn("D4", id="d4")))
    assert_outcome(fhir.post("", json=with_query), 400, contains="both an id and search criteria")


def test_batch_survives_malformed_entries_and_empty_bundles(fhir: httpx.Client) -> None:
    bundle = _bundle(
        "batch",
        {"request": {"method": "PUT", "url": "Patient/bb1", "ifMatch": 3}, "resource": patient(id="bb1")},
        _entry("PUT", "Patient/bb2", patient(id="bb2")),
    )
    result = fhir.post("", json=bundle).json()
    assert [e["response"]["status"] for e in result["entry"]] == ["400 Bad Request", "201 Created"]
    assert fhir.get("/Patient/bb2").status_code == 200
    empty = fhir.post("", json={"resourceType": "Bundle", "type": "transaction"}).json()
    assert empty["type"] == "transaction-response" and "entry" not in empty


def test_transaction_of_puts_creates_new_ones_in_bulk_and_updates_the_rest(fhir: httpx.Client) -> None:
    """A loader's bundle of PUTs: new ids are created (201, version 1), existing ones updated (200, version 2)."""
    assert fhir.put("/Patient/bulk-2", json=patient(id="bulk-2")).status_code == 201
    entries = [
        {"resource": patient(id=f"bulk-{n}", gender="female"), "request": {"method": "PUT", "url": f"Patient/bulk-{n}"}}
        for n in range(1, 5)
    ]
    response = fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "200 OK", "201 Created", "201 Created"]
    assert fhir.get("/Patient/bulk-2").json()["meta"]["versionId"] == "2"
    assert fhir.get("/Patient/bulk-3").json()["meta"]["versionId"] == "1"
    assert {e["resource"]["id"] for e in fhir.get("/Patient", params={"gender": "female"}).json()["entry"]} == {
        "bulk-1", "bulk-2", "bulk-3", "bulk-4"}
    bad = [*entries, {"resource": patient(id="other"), "request": {"method": "PUT", "url": "Patient/bulk-9"}}]
    assert_outcome(fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": bad}), 400,
                   contains="Bundle.entry[4]")
