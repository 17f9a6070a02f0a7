"""ID and phone numbers are encrypted at rest, yet found by search; keys rotate without loss."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from sqlalchemy import String, Text, select

from hub.api.app import create_app
from hub.auth.tokens import SigningKey, SigningKeyMissing
from hub.config import Settings
from hub.privacy import KeyringError
from hub.store.database import Database
from hub.store.protection import reencrypt
from hub.store.reindex import reindex
from hub.store.schema import metadata
from hub.store.tables import resource
from tests.conftest import assert_outcome

CITIZEN_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
ID_NUMBER = "11010519491231002X"  # the example number of GB 11643
OTHER_ID = "320583196803120015"
PHONE = "13812345678"


def _patient(**extra: object) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:hub:mrn:org-ks-1", "value": "MRN-77"},
            {"system": CITIZEN_ID_SYSTEM, "value": ID_NUMBER},
            # a citizen ID recognised by its WS 364 document type, with no system
            {"type": {"coding": [{"system": "urn:oid:2.16.156.10011.2.3.1.1", "code": "01"}]}, "value": OTHER_ID},
        ],
        "telecom": [{"system": "phone", "value": PHONE}, {"system": "email", "value": "zhang@example.cn"}],
        "name": [{"text": "张三"}],
        **extra,
    }


def _stored_text(database: Database) -> str:
    """Every text value of every hub table, joined (what a stolen database file shows)."""
    out = []
    with database.engine.connect() as connection:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, Text))]
            if columns:
                out.extend(str(v) for row in connection.execute(select(*columns)) for v in row)
    return "\n".join(out)


def test_stored_encrypted_served_plain(fhir: httpx.Client, database: Database) -> None:
    created = fhir.post("/Patient", json=_patient())
    assert created.status_code == 201, created.text
    served = fhir.get(f"/Patient/{created.json()['id']}").json()
    assert [i["value"] for i in served["identifier"]] == ["MRN-77", ID_NUMBER, OTHER_ID]
    assert served["telecom"][0]["value"] == PHONE
    fhir.put(f"/Patient/{served['id']}", json={**served, "gender": "male"})  # a second version
    stored = _stored_text(database)
    for secret in (ID_NUMBER, OTHER_ID, PHONE, ID_NUMBER[:-1]):
        assert secret not in stored
    assert "MRN-77" in stored and "zhang@example.cn" in stored  # not personal numbers: kept plain
    with database.engine.connect() as connection:
        content = connection.execute(select(resource.c.content)).scalar_one()
    assert content.count("hub:enc:v1:") == 3


@pytest.mark.parametrize(("params", "found"), [
    ({"identifier": f"{CITIZEN_ID_SYSTEM}|{ID_NUMBER}"}, True),
    ({"identifier": ID_NUMBER}, True),
    ({"identifier": ID_NUMBER.lower()}, True),
    ({"identifier": OTHER_ID}, True),
    ({"identifier": f"{CITIZEN_ID_SYSTEM}|{OTHER_ID}"}, False),  # that one has no system
    ({"identifier": f"{CITIZEN_ID_SYSTEM}|110105194912310039"}, False),
    ({"identifier": "urn:hub:mrn:org-ks-1|MRN-77"}, True),
    ({"phone": PHONE}, True),
    ({"phone": "+86 138-1234-5678"}, True),
    ({"telecom": PHONE}, True),
    ({"phone": "13812345679"}, False),
    ({"email": "zhang@example.cn"}, True),
])
def test_search_finds_protected_values(fhir: httpx.Client, params: dict, found: bool) -> None:
    fhir.post("/Patient", json=_patient())
    fhir.post("/Patient", json={"resourceType": "Patient", "name": [{"text": "李四"}]})
    bundle = fhir.get("/Patient", params=params).json()
    assert bundle["total"] == (1 if found else 0), params


def test_chained_and_conditional_use_the_blind_index(fhir: httpx.Client) -> None:
    criteria = f"identifier={CITIZEN_ID_SYSTEM}|{ID_NUMBER}"
    first = fhir.post("/Patient", json=_patient(), headers={"If-None-Exist": criteria})
    again = fhir.post("/Patient", json=_patient(), headers={"If-None-Exist": criteria})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
                     "subject": {"reference": f"Patient?{criteria}"}},
        "request": {"method": "POST", "url": "Observation"}}]}
    assert fhir.post("", json=bundle).status_code == 200
    chained = fhir.get("/Observation", params={"subject:Patient.identifier": ID_NUMBER}).json()
    assert chained["total"] == 1
    assert chained["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{first.json()['id']}"


def test_clients_cannot_plant_encrypted_tokens(fhir: httpx.Client) -> None:
    body = _patient(identifier=[{"system": CITIZEN_ID_SYSTEM, "value": "hub:enc:v1:k:AAAA"}])
    assert_outcome(fhir.post("/Patient", json=body), 400, contains="reserved")


def test_key_rotation_reencrypts_and_keeps_search(fhir: httpx.Client, settings: Settings, database: Database) -> None:
    pid = fhir.post("/Patient", json=_patient()).json()["id"]
    old_key = database.protector.keyring.active
    rotated = database.protector.keyring.with_new_active_key()
    after = Database(settings, engine=database.engine, keyring=rotated)
    assert reencrypt(after) == 2  # the current row and its one version
    assert reencrypt(after) == 0  # idempotent
    stored = _stored_text(database)
    assert f"hub:enc:v1:{rotated.active}:" in stored and f"hub:enc:v1:{old_key}:" not in stored
    with after.fhir_service(write=False) as service:
        served = service.read("Patient", pid).resource
        assert served is not None and ID_NUMBER.encode() in (served.content or b"")
    reindex(after, "Patient", restart=True)
    with after.fhir_service(write=False) as service:
        found = service.search("Patient", [("identifier", ID_NUMBER)], "").body
    assert found is not None and found["total"] == 1


def test_production_refuses_to_start_without_keys(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    production = dataclasses.replace(settings, environment="production", key_dir=str(tmp_path / "none"))
    with pytest.raises(SigningKeyMissing, match="HUB_SIGNING_KEY_FILE"):
        create_app(production)
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(SigningKey.generate_pem())
    with pytest.raises(KeyringError, match="HUB_DATA_KEYS"):
        create_app(dataclasses.replace(production, signing_key_file=str(key_file)))
    assert not (tmp_path / "none").exists()  # nothing generated in production
