"""Helpers of the audit-trail tests: principals, waiting for events, reading their parts."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select

from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.store.database import Database
from hub.store.tables import audit_event as audit_table
from hub.store.tables import audit_patient
from tests.conftest import fhir_client, patient

DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
ALL = frozenset("cruds")
#: Reads the trail in the tests (its own searches are audited under this id).
AUDITOR = Principal("security-officer", Role.ADMIN, {"*": ALL})
APP = Principal("downstream-app", Role.APP, {"*": frozenset("rs")})
GOVERNANCE = Principal("governance-desk", Role.GOVERNANCE, {"*": frozenset("rs")})
ID_NUMBER = "11010519491231002X"
MOBILE = "13812345678"


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def empty_trail(database: Database) -> None:
    """No event of an earlier test (still queued, or recorded just after its response) is left."""
    time.sleep(0.1)
    database.audit.flush()
    with database.engine.begin() as connection:
        connection.execute(audit_patient.delete())
        connection.execute(audit_table.delete())


def all_events(database: Database) -> list[dict[str, Any]]:
    """Every stored AuditEvent, oldest first (queued ones written first)."""
    database.audit.flush()
    with database.engine.connect() as connection:
        rows = connection.execute(
            select(audit_table.c.content).order_by(audit_table.c.recorded, audit_table.c.audit_pk)
        ).scalars().all()
    return [json.loads(row) for row in rows]


def agent_id(event: dict[str, Any]) -> str:
    """The client id of the requesting agent (exactly one agent is the requestor)."""
    requestors = [a for a in event["agent"] if a.get("requestor") is True]
    assert len(requestors) == 1, event
    return requestors[0]["who"]["identifier"]["value"]


def events_of(database: Database, client_id: str, expected: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Exactly ``expected`` events of ``client_id``, oldest first.

    The middleware records an event just after its response went out, so wait for it.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in all_events(database) if agent_id(e) == client_id]
        if len(found) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    time.sleep(0.1)  # nothing more arrives
    found = [e for e in all_events(database) if agent_id(e) == client_id]
    assert len(found) == expected, json.dumps(found, ensure_ascii=False, indent=1)
    return found


def requestor(event: dict[str, Any]) -> dict[str, Any]:
    [agent] = [a for a in event["agent"] if a.get("requestor") is True]
    return agent


def patients_of(event: dict[str, Any]) -> list[str]:
    """References of the entities in the role Patient."""
    return sorted(e["what"]["reference"] for e in event["entity"] if e.get("role", {}).get("code") == "1")


def patient_entities(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in event["entity"] if e.get("role", {}).get("code") == "1"]


def objects_of(event: dict[str, Any]) -> list[str]:
    """References of the system objects the interaction was on."""
    return [e["what"]["reference"] for e in event["entity"]
            if e["type"]["code"] == "2" and "what" in e and e.get("role", {}).get("code") != "24"]


def query_entity(event: dict[str, Any]) -> dict[str, Any]:
    [entity] = [e for e in event["entity"] if e.get("role", {}).get("code") == "24"]
    return entity


def subtype(event: dict[str, Any]) -> str:
    [coding] = event["subtype"]
    assert coding["system"] == INTERACTION
    return coding["code"]


def assert_event(event: dict[str, Any], *, client_id: str, action: str, interaction: str, outcome: str,
                 status: int, address: str = "127.0.0.1") -> None:
    assert event["resourceType"] == "AuditEvent"
    assert event["action"] == action, event
    assert subtype(event) == interaction, event
    assert event["outcome"] == outcome, event
    assert event["outcomeDesc"] == f"HTTP {status}", event
    agent = requestor(event)
    assert agent["who"]["identifier"] == {"system": "urn:hub:client", "value": client_id}
    assert agent["network"]["address"] == address
    assert [a for a in event["agent"] if a.get("requestor") is False], "the hub is the destination agent"
    if interaction != "login":
        assert event["type"]["code"] == "rest"


def recorded_us(event: dict[str, Any]) -> int:
    moment = datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
    return int(moment.timestamp() * 1_000_000)


def new_patient(server: str, **extra: object) -> str:
    """Create a Patient as the (test) admin; its id."""
    with fhir_client(server) as admin:
        response = admin.post("/Patient", json=patient(**extra))
    assert response.status_code == 201, response.text
    return response.json()["id"]


def actor(name: str, role: Role = Role.ADMIN, grants: dict | None = None) -> Principal:
    return Principal(f"{name}-{uuid.uuid4().hex[:8]}", role, grants or {"*": ALL})

