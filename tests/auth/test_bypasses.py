"""Attacks found in review, each kept as a regression test: scope and institution bypasses
through transactions, chains, _has, consortium reach, deletions and client assertions."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.auth.clients import ClientError, new_client
from hub.auth.principal import Principal
from hub.auth.roles import Role, scope_ceiling
from hub.config import Settings
from hub.store.database import Database
from tests.auth.support import principal, register, tagged
from tests.conftest import assert_outcome, fhir_client

CDS = principal(Role.CLINICIAN_CDS)  # no Condition scope
IT_B = principal(Role.SOURCE_ADMIN, institutions=("B",), client_id="it-b")


@pytest.fixture
def two_hospitals(fhir: httpx.Client, database: Database) -> Iterator[None]:
    for resource in (
        {"resourceType": "Organization", "id": "cons1", "name": "医共体"},
        {"resourceType": "Organization", "id": "A", "partOf": {"reference": "Organization/cons1"}},
        {"resourceType": "Organization", "id": "B", "partOf": {"reference": "Organization/cons1"}},
        tagged({"resourceType": "Patient", "id": "pa", "name": [{"text": "李四"}], "birthDate": "1980-05-06",
                "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": "110105198005060012"}]}, "A"),
        tagged({"resourceType": "Condition", "id": "ca", "subject": {"reference": "Patient/pa"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20"}]}}, "A"),
        tagged({"resourceType": "Patient", "id": "pb", "name": [{"text": "赵六"}]}, "B"),
    ):
        assert fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource).status_code == 201
    yield


def test_transaction_entries_cannot_read_what_the_token_may_not(server: str, two_hospitals: None) -> None:
    probe = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "POST", "url": "Condition", "ifNoneExist": "code=B20"},
        "resource": {"resourceType": "Condition", "subject": {"reference": "Patient/pa"}}}]}
    with fhir_client(server, CDS) as cds:
        response = cds.post("", json=probe)
        assert_outcome(response, 403)
        assert "B20" not in response.text
        delete = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": "Condition?code=B20"}}]}
        assert_outcome(cds.post("", json=delete), 403)
        assert_outcome(cds.post("", json={**delete, "entry": [
            {"request": {"method": "DELETE", "url": "Condition?code=J45"}}]}), 403)  # same answer either way


def test_failed_patch_test_does_not_echo_stored_values(fhir: httpx.Client, two_hospitals: None) -> None:
    response = fhir.patch("/Condition/ca", json=[{"op": "test", "path": "/code", "value": 0}],
                          headers={"Content-Type": "application/json-patch+json"})
    assert_outcome(response, 422, contains="'test' operation failed")
    assert "B20" not in response.text


@pytest.mark.parametrize("query", [
    {"_has:Patient:organization:name": "李"},
    {"_has:Patient:organization:identifier": "110105198005060012"},
    {"_has:Patient:organization:_has:Condition:subject:code": "B20"},
])
def test_has_cannot_probe_another_institution(server: str, two_hospitals: None, query: dict) -> None:
    with fhir_client(server, IT_B) as it:
        found = it.get("/Organization", params=query).json()
    assert found["total"] == 0, found


def test_chains_and_has_need_the_scope_of_the_types_they_search(server: str, two_hospitals: None) -> None:
    with fhir_client(server, CDS) as cds:
        assert_outcome(cds.get("/Patient", params={"_has:Condition:subject:code": "B20"}), 403, contains="Condition")
        assert_outcome(cds.get("/Encounter", params={"diagnosis:Condition.code": "B20"}), 403, contains="Condition")


def test_bound_writers_cannot_attach_data_to_another_institutions_patient(server: str, two_hospitals: None) -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
                   "subject": {"reference": "Patient/pa"}}
    with fhir_client(server, IT_B) as it:
        assert_outcome(it.post("/Observation", json=observation), 403, contains="Patient/pa")
        own = {**observation, "subject": {"reference": "Patient/pb"}}
        assert it.post("/Observation", json=own).status_code == 201


def test_consortium_reach_widens_reads_not_writes(server: str, two_hospitals: None) -> None:
    with pytest.raises(ClientError, match="not consortia"):
        new_client("it", Role.SOURCE_ADMIN, institutions=["B"], consortia=["cons1"])
    reader_writer = Principal("gov-b", Role.SOURCE_ADMIN, scope_ceiling(Role.SOURCE_ADMIN), frozenset({"B"}),
                              frozenset({"cons1"}))  # a token minted with both (not issuable since the rule)
    with fhir_client(server, reader_writer) as client:
        assert client.get("/Patient/pa").status_code == 200  # reads the consortium
        assert_outcome(client.put("/Patient/pa", json=tagged({"resourceType": "Patient", "id": "pa"}, "A")), 403)
        assert_outcome(client.delete("/Condition/ca"), 403)
        assert_outcome(client.post("/Patient", json=tagged({"resourceType": "Patient"}, "A")), 403, contains="A")


def test_deleted_resources_of_others_are_neither_seen_nor_taken_over(server: str, fhir: httpx.Client,
                                                                     two_hospitals: None) -> None:
    assert fhir.delete("/Condition/ca").status_code == 200
    with fhir_client(server, IT_B) as it:
        assert_outcome(it.get("/Condition/ca"), 404)
        assert_outcome(it.get("/Condition/ca/_history/2"), 404)
        taken = it.put("/Condition/ca", json=tagged({"resourceType": "Condition", "id": "ca",
                                                     "subject": {"reference": "Patient/pb"}}, "B"))
        assert_outcome(taken, 403)
    assert_outcome(fhir.get("/Condition/ca"), 410)  # still A's deletion


def test_shared_types_stay_visible_in_system_search(server: str, two_hospitals: None) -> None:
    with fhir_client(server, IT_B) as it:
        assert it.get("", params={"_type": "Organization"}).json()["total"] == 3
        assert {e["resource"]["id"] for e in it.get("", params={"_type": "Patient"}).json()["entry"]} == {"pb"}


def test_id_numbers_marked_by_type_alone_are_searchable(fhir: httpx.Client) -> None:
    patient = {"resourceType": "Patient", "identifier": [{
        "system": "urn:hub:idcard", "value": "320583196803120015",
        "type": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.1.1", "code": "01"}]}}]}
    header = {"If-None-Exist": "identifier=urn:hub:idcard|320583196803120015"}
    first, second = fhir.post("/Patient", json=patient, headers=header), fhir.post("/Patient", json=patient,
                                                                                   headers=header)
    assert (first.status_code, second.status_code) == (201, 200)


def test_too_many_parameters_and_read_only_batches(fhir: httpx.Client, two_hospitals: None) -> None:
    assert_outcome(fhir.get("/Patient", params=[("name", str(i)) for i in range(101)]), 400, contains="at most 100")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient?name=李"}}, {"request": {"method": "GET", "url": "Patient/pb"}}]}
    response = fhir.post("", json=batch)
    assert response.status_code == 200
    assert [e["response"]["status"][:3] for e in response.json()["entry"]] == ["200", "200"]


def test_assertion_with_the_wrong_algorithm_for_the_key_is_401(server: str, database: Database) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "ec1"}
    client, _ = register(database, Role.APP, jwks={"keys": [jwk]})
    now = int(time.time())
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": f"{server}/auth/token", "exp": now + 60,
              "jti": uuid.uuid4().hex}
    forged = jwt.encode(claims, "not-a-key-just-a-secret-of-32-bytes!", algorithm="HS256", headers={"kid": "ec1"})
    head = jwt.utils.base64url_encode(b'{"alg":"RS256","kid":"ec1","typ":"JWT"}').decode()
    for assertion in (forged, head + forged[forged.index("."):]):
        response = httpx.post(f"{server}/auth/token", data={
            "grant_type": "client_credentials", "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text


def test_assertion_audience_is_the_configured_token_url(settings: Settings, database: Database) -> None:
    """With HUB_PUBLIC_BASE_URL set, the Host header cannot make another server's assertion valid here."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "ec1"}
    client, _ = register(database, Role.APP, jwks={"keys": [jwk]})
    public = dataclasses.replace(settings, public_base_url="https://hub.ks.example.cn/fhir")

    def assertion(aud: str) -> str:
        now = int(time.time())
        return jwt.encode({"iss": client.client_id, "sub": client.client_id, "aud": aud, "exp": now + 60,
                           "jti": uuid.uuid4().hex}, key, algorithm="ES256", headers={"kid": "ec1"})

    with TestClient(create_app(public, database)) as hub:
        def token(aud: str, host: str) -> int:
            return hub.post("/auth/token", headers={"Host": host}, data={
                "grant_type": "client_credentials", "client_assertion": assertion(aud),
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}).status_code

        assert token("https://hub.ks.example.cn/auth/token", "testserver") == 200
        assert token("http://evil.example/auth/token", "evil.example") == 401
