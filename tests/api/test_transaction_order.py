"""Transaction results do not depend on entry order (R4 http.html#trules), and the
cases a second review found: http systems in conditional URLs, deadlocks, lock limits."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import text

from hub.store.database import Database
from tests.api.test_transaction import _bundle, _entry, _observation
from tests.conftest import MRN, assert_outcome, fhir_client, patient, with_mrn

HTTP_SYSTEM = "http://hospital.example.cn/mrn"


def _patch_entry(url: str, ops: list[dict]) -> dict:
    data = base64.b64encode(json.dumps(ops).encode()).decode()
    return _entry("PATCH", url, {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data})


@pytest.mark.parametrize("reverse", [False, True])
def test_conditional_create_sees_a_put_of_the_same_bundle(fhir: httpx.Client, reverse: bool) -> None:
    entries = [_entry("POST", "Patient", with_mrn("ORD1"), ifNoneExist=f"identifier={MRN}|ORD1"),
               _entry("PUT", "Patient/ord-p", with_mrn("ORD1", id="ord-p"))]
    result = fhir.post("", json=_bundle("transaction", *(entries[::-1] if reverse else entries)))
    assert result.status_code == 200, result.text
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|ORD1"}).json()["total"] == 1
    statuses = sorted(e["response"]["status"] for e in result.json()["entry"])
    assert statuses == ["200 OK", "201 Created"]


@pytest.mark.parametrize("reverse", [False, True])
def test_gets_run_after_every_write(fhir: httpx.Client, reverse: bool) -> None:
    fhir.put("/Patient/g1", json=patient(id="g1"))
    entries = [_entry("GET", "Patient/g1"), _entry("PUT", "Patient/g1", patient(id="g1", active=reverse))]
    result = fhir.post("", json=_bundle("transaction", *(entries[::-1] if reverse else entries))).json()
    read = next(e for e in result["entry"] if "resource" in e)
    assert read["resource"]["meta"]["versionId"] == "2"


@pytest.mark.parametrize("reverse", [False, True])
def test_overlapping_deletes_fail_in_any_order(fhir: httpx.Client, reverse: bool) -> None:
    fhir.put("/Patient/del-o", json=with_mrn("DELO", id="del-o"))
    entries = [_entry("DELETE", f"Patient?identifier={MRN}|DELO"), _entry("DELETE", "Patient/del-o")]
    response = fhir.post("", json=_bundle("transaction", *(entries[::-1] if reverse else entries)))
    assert_outcome(response, 400, contains="only once")
    assert fhir.get("/Patient/del-o").status_code == 200


def test_patch_in_the_bundle_is_seen_by_conditional_references(fhir: httpx.Client) -> None:
    fhir.put("/Patient/pt1", json=with_mrn("OLD", id="pt1"))
    ops = [{"op": "replace", "path": "/identifier/0/value", "value": "NEW"}]
    by_old = _bundle("transaction", _patch_entry("Patient/pt1", ops),
                     _entry("POST", "Observation", _observation(f"Patient?identifier={MRN}|OLD")))
    assert_outcome(fhir.post("", json=by_old), 400, contains="matches no resource")
    by_new = _bundle("transaction", _entry("POST", "Observation", _observation(f"Patient?identifier={MRN}|NEW")),
                     _patch_entry("Patient/pt1", ops))
    result = fhir.post("", json=by_new)
    assert result.status_code == 200, result.text
    obs_id = result.json()["entry"][0]["response"]["location"].split("/")[1]
    assert fhir.get(f"/Observation/{obs_id}").json()["subject"]["reference"] == "Patient/pt1"


def test_http_systems_in_conditional_urls(fhir: httpx.Client) -> None:
    body = patient(identifier=[{"system": HTTP_SYSTEM, "value": "H1"}])
    bundle = _bundle("transaction", _entry("PUT", f"Patient?identifier={HTTP_SYSTEM}|H1", body))
    assert fhir.post("", json=bundle).json()["entry"][0]["response"]["status"] == "201 Created"
    again = fhir.post("", json=bundle).json()
    assert again["entry"][0]["response"]["status"] == "200 OK"
    other_server = _bundle("batch", _entry("GET", "http://elsewhere.example.cn/fhir/Patient/1"))
    outcome = fhir.post("", json=other_server).json()["entry"][0]["response"]
    assert outcome["status"].startswith("400")
    assert outcome["outcome"]["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


def test_references_resolve_against_an_absolute_full_url(fhir: httpx.Client, server: str) -> None:
    full_url = f"{server}/fhir/Patient/temp-1"
    bundle = _bundle("transaction", _entry("POST", "Patient", patient(), full_url),
                     _entry("POST", "Observation", _observation("Patient/temp-1")),
                     _entry("POST", "Observation", _observation(full_url)))
    result = fhir.post("", json=bundle)
    assert result.status_code == 200, result.text
    entries = result.json()["entry"]
    pid = entries[0]["response"]["location"].split("/")[1]
    for entry in entries[1:]:
        observation = fhir.get("/Observation/" + entry["response"]["location"].split("/")[1]).json()
        assert observation["subject"]["reference"] == f"Patient/{pid}"


def test_document_bundle_inside_a_transaction_keeps_its_references(fhir: httpx.Client) -> None:
    document = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:dddddddd-0000-4000-8000-000000000001", "resource": patient()},
        {"resource": _observation("urn:uuid:dddddddd-0000-4000-8000-000000000001")}]}
    result = fhir.post("", json=_bundle("transaction", _entry("POST", "Bundle", document)))
    assert result.status_code == 200, result.text
    stored = fhir.get("/" + "/".join(result.json()["entry"][0]["response"]["location"].split("/")[:2])).json()
    assert stored["entry"][1]["resource"]["subject"]["reference"] == "urn:uuid:dddddddd-0000-4000-8000-000000000001"


def test_non_string_id_and_head_entries(fhir: httpx.Client) -> None:
    numeric = _bundle("transaction", _entry("PUT", f"Patient?identifier={MRN}|NUM", with_mrn("NUM", id=123)))
    assert_outcome(fhir.post("", json=numeric), 400, contains="string")
    fhir.put("/Patient/hd1", json=patient(id="hd1"))
    head = fhir.post("", json=_bundle("batch", _entry("HEAD", "Patient/hd1"))).json()["entry"][0]
    assert head["response"]["status"] == "200 OK" and "resource" not in head
    assert fhir.get("/metadata").status_code == 200  # the connection still works


def test_opposite_bundles_do_not_deadlock(server: str, fhir: httpx.Client, database: Database) -> None:
    keys = [f"DL{i}" for i in range(60)]

    def bundle(order: list[str]) -> dict:
        return _bundle("transaction", *[_entry("POST", "Patient", with_mrn(k), ifNoneExist=f"identifier={MRN}|{k}")
                                        for k in order])

    barrier = threading.Barrier(2)

    def send(order: list[str]) -> int:
        with fhir_client(server) as client:
            barrier.wait()
            return client.post("", json=bundle(order)).status_code

    for _round in range(3):
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(send, [keys, keys[::-1]])) == [200, 200]
    assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == len(keys)
    with database.unit_of_work(write=True) as repository:
        repository.lock([f"Patient?key-{i}" for i in range(5000)])
        if database.engine.dialect.name == "postgresql":
            held = repository.connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")).scalar_one()
            assert 0 < held <= 1024
