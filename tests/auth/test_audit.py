"""The audit trail as a security officer reads it: one AuditEvent per interaction (refusals and
failures included) saying who, from where, did what to which patient's data, with what outcome."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.auth.clients import new_client
from hub.auth.roles import Role
from hub.config import Settings
from hub.fhir.service import FhirService
from hub.store.database import Database
from tests.auth.audit_support import (  # noqa: F401  (empty_trail is an autouse fixture)
    APP,
    DCM,
    actor,
    agent_id,
    all_events,
    assert_event,
    empty_trail,
    events_of,
    new_patient,
    objects_of,
    patient_entities,
    patients_of,
    query_entity,
    recorded_us,
    requestor,
    subtype,
)
from tests.conftest import assert_outcome, bearer, fhir_client, patient

# -- what each interaction records ----------------------------------------------------------


def test_read_records_who_from_where_what_and_which_patient(server: str, database: Database) -> None:
    patient_id = new_patient(server)
    reader = actor("ward-app")
    before = time.time()
    with fhir_client(server, reader) as client:
        assert client.get(f"/Patient/{patient_id}").status_code == 200
    after = time.time()

    [event] = events_of(database, reader.client_id, 1)
    assert_event(event, client_id=reader.client_id, action="R", interaction="read", outcome="0", status=200)
    assert requestor(event)["network"] == {"address": "127.0.0.1", "type": "2"}
    assert patient_entities(event) == [{
        "what": {"reference": f"Patient/{patient_id}"},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                 "display": "Person"},
        "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
    }]
    assert objects_of(event) == [f"Patient/{patient_id}"]
    assert before * 1e6 - 1000 <= recorded_us(event) <= after * 1e6 + 1000
    assert event["source"]["observer"]["display"]


def test_search_lists_the_patients_in_the_response(server: str, database: Database) -> None:
    patient_id = new_patient(server)
    other_id = new_patient(server)
    with fhir_client(server) as admin:
        for subject in (patient_id, patient_id, other_id):
            observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                           "subject": {"reference": f"Patient/{subject}"}}
            assert admin.post("/Observation", json=observation).status_code == 201
    searcher = actor("registry")
    with fhir_client(server, searcher) as client:
        found = client.get("/Observation", params={"subject": f"Patient/{patient_id}"})
    assert found.status_code == 200 and found.json()["total"] == 2

    [event] = events_of(database, searcher.client_id, 1)
    assert_event(event, client_id=searcher.client_id, action="E", interaction="search-type", outcome="0",
                 status=200)
    assert patients_of(event) == [f"Patient/{patient_id}"]
    query = query_entity(event)
    assert query["description"] == "GET /fhir/Observation"
    assert parse_qsl(base64.b64decode(query["query"]).decode()) == [("subject", f"Patient/{patient_id}")]


def test_create_update_delete_record_their_action_and_the_resource(server: str, database: Database) -> None:
    writer = actor("hospital-feed")
    with fhir_client(server, writer) as client:
        created = client.post("/Patient", json=patient())
        assert created.status_code == 201
        new_id = created.headers["location"].split("/Patient/")[1].split("/")[0]
        assert new_id == created.json()["id"]
        assert client.put(f"/Patient/{new_id}", json=patient(id=new_id, gender="female")).status_code == 200
        assert client.delete(f"/Patient/{new_id}").status_code in (200, 204)
        deleted = client.get(f"/Patient/{new_id}")
    assert deleted.status_code == 410

    create, update, delete, gone = events_of(database, writer.client_id, 4)
    assert_event(create, client_id=writer.client_id, action="C", interaction="create", outcome="0", status=201)
    assert objects_of(create) == [f"Patient/{new_id}"]
    assert patients_of(create) == [f"Patient/{new_id}"]
    assert_event(update, client_id=writer.client_id, action="U", interaction="update", outcome="0", status=200)
    assert objects_of(update) == [f"Patient/{new_id}"]
    assert patients_of(update) == [f"Patient/{new_id}"]
    assert delete["action"] == "D" and subtype(delete) == "delete" and delete["outcome"] == "0"
    assert objects_of(delete) == [f"Patient/{new_id}"]
    assert patients_of(delete) == [f"Patient/{new_id}"]
    assert_event(gone, client_id=writer.client_id, action="R", interaction="read", outcome="4", status=410)


def test_create_of_patient_data_lists_the_patient(server: str, database: Database) -> None:
    patient_id = new_patient(server)
    writer = actor("lab-feed")
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                   "subject": {"reference": f"Patient/{patient_id}"}}
    with fhir_client(server, writer) as client:
        created = client.post("/Observation", json=observation)
    assert created.status_code == 201
    [event] = events_of(database, writer.client_id, 1)
    assert_event(event, client_id=writer.client_id, action="C", interaction="create", outcome="0", status=201)
    assert objects_of(event) == [f"Observation/{created.json()['id']}"]
    assert patients_of(event) == [f"Patient/{patient_id}"]


def _transaction() -> dict[str, Any]:
    new = f"urn:uuid:{uuid.uuid4()}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": new, "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient(id="tx-fixed"), "request": {"method": "PUT", "url": "Patient/tx-fixed"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                      "subject": {"reference": new}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}


def _transaction_patients(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    return sorted("/".join(loc.split("/")[:2]) for loc in locations if loc.startswith("Patient/"))


def test_transaction_is_one_execute_event_listing_its_patients(server: str, database: Database) -> None:
    sender = actor("emr-bridge")
    with fhir_client(server, sender) as client:
        response = client.post("", json=_transaction())
    written = _transaction_patients(response)
    assert len(written) == 2 and "Patient/tx-fixed" in written

    [event] = events_of(database, sender.client_id, 1)
    assert_event(event, client_id=sender.client_id, action="E", interaction="transaction", outcome="0", status=200)
    assert patients_of(event) == written
    assert query_entity(event)["description"] in ("POST /fhir", "POST /fhir/")


def test_transaction_with_minimal_return_still_lists_its_patients(server: str, database: Database) -> None:
    """The patients a transaction writes are in the trail whatever the client asks back (Prefer)."""
    sender = actor("emr-bridge-minimal")
    with fhir_client(server, sender) as client:
        response = client.post("", json=_transaction(), headers={"Prefer": "return=minimal"})
    written = _transaction_patients(response)
    [event] = events_of(database, sender.client_id, 1)
    assert_event(event, client_id=sender.client_id, action="E", interaction="transaction", outcome="0", status=200)
    assert patients_of(event) == written


# -- refusals and failures -----------------------------------------------------------------------


def test_request_without_token_is_audited_as_anonymous_refusal(server: str, database: Database) -> None:
    patient_id = new_patient(server)
    with httpx.Client(base_url=f"{server}/fhir", timeout=30) as anonymous:
        response = anonymous.get(f"/Patient/{patient_id}")
    assert_outcome(response, 401)
    [event] = events_of(database, "anonymous", 1)
    assert_event(event, client_id="anonymous", action="R", interaction="read", outcome="4", status=401)
    assert patients_of(event) == [f"Patient/{patient_id}"]  # what was attempted


def test_invalid_token_is_audited_as_refusal(server: str, database: Database) -> None:
    with httpx.Client(base_url=f"{server}/fhir", timeout=30) as client:
        response = client.get("/Patient", headers={"Authorization": "Bearer not-a-token"})
    assert_outcome(response, 401)
    [event] = events_of(database, "anonymous", 1)
    assert_event(event, client_id="anonymous", action="E", interaction="search-type", outcome="4", status=401)


def test_forbidden_write_is_audited_with_the_client(server: str, database: Database) -> None:
    app = actor("reporting-app", Role.APP, {"*": frozenset("rs")})
    with fhir_client(server, app) as client:
        response = client.post("/Patient", json=patient())
    assert_outcome(response, 403)
    [event] = events_of(database, app.client_id, 1)
    assert_event(event, client_id=app.client_id, action="C", interaction="create", outcome="4", status=403)
    assert objects_of(event) == []  # nothing was written


def test_read_of_unknown_resource_is_audited_as_failure(server: str, database: Database) -> None:
    reader = actor("prober")
    with fhir_client(server, reader) as client:
        assert_outcome(client.get("/Patient/no-such-patient"), 404)
    [event] = events_of(database, reader.client_id, 1)
    assert_event(event, client_id=reader.client_id, action="R", interaction="read", outcome="4", status=404)
    assert objects_of(event) == ["Patient/no-such-patient"]


def test_server_error_is_audited_as_serious_failure(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(FhirService, "read", explode)
    failing = actor("unlucky")
    client = TestClient(create_app(settings, database), raise_server_exceptions=False)
    response = client.get("/fhir/Patient/p-500", headers=bearer(failing))
    assert_outcome(response, 500)
    [event] = events_of(database, failing.client_id, 1)
    assert_event(event, client_id=failing.client_id, action="R", interaction="read", outcome="8", status=500,
                 address="testclient")


# -- logins ---------------------------------------------------------------------------------------


def _registered_client(database: Database) -> tuple[str, str]:
    with database.clients(write=True) as store:
        client, secret = new_client("Ward dashboard", Role.APP)
        store.add(client.record())
    assert secret is not None
    return client.client_id, secret


def test_token_request_is_audited_as_login(server: str, database: Database) -> None:
    client_id, secret = _registered_client(database)
    response = httpx.post(f"{server}/auth/token", auth=(client_id, secret),
                          data={"grant_type": "client_credentials"}, timeout=30)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    [event] = events_of(database, client_id, 1)
    assert_event(event, client_id=client_id, action="E", interaction="login", outcome="0", status=200)
    assert event["type"] == {"system": DCM, "code": "110114", "display": "User Authentication"}
    stored = json.dumps(event)
    assert secret not in stored and token not in stored


def test_failed_login_is_audited(server: str, database: Database) -> None:
    client_id, secret = _registered_client(database)
    response = httpx.post(f"{server}/auth/token", auth=(client_id, secret + "x"),
                          data={"grant_type": "client_credentials"}, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"

    deadline = time.monotonic() + 10
    while not (events := [e for e in all_events(database) if subtype(e) == "login"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    [event] = events
    assert event["type"]["code"] == "110114" and event["action"] == "E"
    assert event["outcome"] == "4" and event["outcomeDesc"] == "HTTP 401"
    assert requestor(event)["network"]["address"] == "127.0.0.1"
    assert secret not in json.dumps(event)


def test_failed_login_names_the_client_that_tried(server: str, database: Database) -> None:
    """Guessing a client's secret shows up in the trail under that client id."""
    client_id, secret = _registered_client(database)
    response = httpx.post(f"{server}/auth/token", auth=(client_id, "wrong-" + secret),
                          data={"grant_type": "client_credentials"}, timeout=30)
    assert response.status_code == 401
    deadline = time.monotonic() + 10
    while not (events := [e for e in all_events(database) if subtype(e) == "login"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    [event] = events
    assert agent_id(event) == client_id, event["agent"]

