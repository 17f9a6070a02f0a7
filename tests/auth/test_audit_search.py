"""The audit trail is searchable by admins only, written by the hub alone, masked, and kept
for the retention period."""

from __future__ import annotations

import base64
import dataclasses
import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from sqlalchemy import func, select

from hub.api.audit import audit_row
from hub.auth.audit import AuditRecord
from hub.auth.principal import Principal
from hub.config import Settings
from hub.store.audit_log import AuditRow
from hub.store.database import Database
from hub.store.tables import audit_event as audit_table
from hub.store.tables import audit_patient
from tests.auth.audit_support import (  # noqa: F401  (empty_trail is an autouse fixture)
    APP,
    AUDITOR,
    DCM,
    GOVERNANCE,
    ID_NUMBER,
    MOBILE,
    actor,
    agent_id,
    all_events,
    empty_trail,
    events_of,
    new_patient,
    objects_of,
    patients_of,
    query_entity,
    requestor,
    subtype,
)
from tests.conftest import ADMIN, FHIR_JSON, assert_outcome, fhir_client

# -- searching the trail -------------------------------------------------------------------------

BASE = (datetime.now(timezone.utc) - timedelta(days=10)).replace(microsecond=0)


def _when(hours: int) -> datetime:
    return BASE + timedelta(hours=hours)


def _instant(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(hours: int, client: str, method: str, path: str, status: int, *, patients: tuple[str, ...] = (),
            written: str = "", query: str = "", address: str = "10.1.2.3") -> AuditRecord:
    return AuditRecord(method, path, query, address, client_id=client, status=status, patients=set(patients),
                       written=written, recorded=_when(hours))


@pytest.fixture
def trail(database: Database) -> dict[str, str]:
    """Seven events ten days ago, an hour apart: name → event id."""
    records = {
        "e1": _record(0, "clinic-a", "GET", "/fhir/Patient/p1", 200),
        "e2": _record(1, "clinic-a", "GET", "/fhir/Observation", 200, patients=("p1",), query="subject=Patient/p1"),
        "e3": _record(2, "clinic-b", "POST", "/fhir/Patient", 201, patients=("p2",), written="Patient/p2"),
        "e4": _record(3, "clinic-b", "PUT", "/fhir/Patient/p1", 200, patients=("p1",)),
        "e5": _record(4, "clinic-a", "DELETE", "/fhir/Patient/p2", 204),
        "e6": _record(5, "anonymous", "GET", "/fhir/Patient/p1", 401, address="10.9.9.9"),
        "e7": _record(6, "clinic-b", "GET", "/fhir/Patient/p3", 500),
    }
    for record in records.values():
        database.audit.record(audit_row(record))
    database.audit.flush()
    return {name: record.event_id for name, record in records.items()}


def _search(server: str, params: dict[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
    with fhir_client(server, AUDITOR) as auditor:
        response = auditor.get("/AuditEvent", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    for entry in bundle.get("entry", []):
        assert entry["fullUrl"] == f"{server}/fhir/AuditEvent/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
        assert entry["resource"]["resourceType"] == "AuditEvent"
    return bundle


def _found(trail: dict[str, str], bundle: dict[str, Any]) -> list[str]:
    names = {event_id: name for name, event_id in trail.items()}
    found = [names.get(e["resource"]["id"], e["resource"]["id"]) for e in bundle.get("entry", [])]
    assert bundle["total"] == len(found), bundle
    return found


#: Keeps the auditor's own (audited) searches out of results that could include them.
def _before_now() -> tuple[str, str]:
    return ("date", "lt" + _instant(_when(24)))


@pytest.mark.parametrize(("params", "expected"), [
    ([("patient", "p1"), _before_now()], ["e6", "e4", "e2", "e1"]),
    ([("patient", "Patient/p2"), _before_now()], ["e5", "e3"]),
    ([("patient", "p1,p2"), _before_now()], ["e6", "e5", "e4", "e3", "e2", "e1"]),
    ([("agent", "clinic-a")], ["e5", "e2", "e1"]),
    ([("agent", "urn:hub:client|clinic-b")], ["e7", "e4", "e3"]),
    ([("agent", "anonymous")], ["e6"]),
    ([("action", "R")], ["e7", "e6", "e1"]),
    ([("action", "C,D")], ["e5", "e3"]),
    ([("action", "U")], ["e4"]),
    ([("subtype", "read")], ["e7", "e6", "e1"]),
    ([("subtype", "search-type"), _before_now()], ["e2"]),
    ([("subtype", "create")], ["e3"]),
    ([("outcome", "4")], ["e6"]),
    ([("outcome", "8")], ["e7"]),
    ([("outcome", "0"), _before_now()], ["e5", "e4", "e3", "e2", "e1"]),
    ([("entity", "Patient/p1")], ["e6", "e4", "e1"]),
    ([("entity", "Patient/p2")], ["e5", "e3"]),
    ([("address", "10.9.9.9")], ["e6"]),
    ([("agent", "clinic-a"), ("action", "R")], ["e1"]),
    ([("agent", "clinic-b"), ("patient", "p1")], ["e4"]),
], ids=lambda value: "&".join(f"{k}={v}" for k, v in value) if isinstance(value, list) else None)
def test_admin_searches_the_trail_newest_first(
    server: str, trail: dict[str, str], params: list[tuple[str, str]], expected: list[str]
) -> None:
    assert _found(trail, _search(server, params)) == expected


def test_search_by_date_range(server: str, trail: dict[str, str]) -> None:
    between = [("date", "ge" + _instant(_when(1))), ("date", "le" + _instant(_when(3)))]
    assert _found(trail, _search(server, between)) == ["e4", "e3", "e2"]
    assert _found(trail, _search(server, [("date", "lt" + _instant(_when(1)))])) == ["e1"]
    assert _found(trail, _search(server, [("date", "gt" + _instant(_when(5))), _before_now()])) == ["e7"]
    with_offset = (_when(2) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00")
    assert _found(trail, _search(server, [("date", "ge" + with_offset), _before_now()])) == ["e7", "e6", "e5", "e4",
                                                                                            "e3"]
    day = _when(0).strftime("%Y-%m-%d")
    assert _found(trail, _search(server, [("date", f"lt{day}")])) == []


def test_search_pages_with_count_offset_and_next_link(server: str, trail: dict[str, str]) -> None:
    first = _search(server, [("agent", "clinic-a,clinic-b"), ("_count", "2")])
    assert first["total"] == 6
    assert [_name(trail, e) for e in first["entry"]] == ["e7", "e5"]
    pages = [first]
    with fhir_client(server, AUDITOR) as auditor:
        while (following := _link(pages[-1], "next")) is not None:
            response = auditor.get(following)
            assert response.status_code == 200, response.text
            pages.append(response.json())
            assert len(pages) < 10
    assert [[_name(trail, e) for e in page["entry"]] for page in pages] == [["e7", "e5"], ["e4", "e3"], ["e2", "e1"]]
    assert all(page["total"] == 6 for page in pages)
    assert "_offset=2" in _link(first, "next")
    assert _link(first, "self") is not None

    third = _search(server, [("agent", "clinic-a,clinic-b"), ("_count", "2"), ("_offset", "4")])
    assert [_name(trail, e) for e in third["entry"]] == ["e2", "e1"]
    assert _link(third, "next") is None
    beyond = _search(server, [("agent", "clinic-a,clinic-b"), ("_offset", "10")])
    assert beyond["total"] == 6 and "entry" not in beyond


def test_next_link_keeps_values_that_need_encoding(server: str, trail: dict[str, str]) -> None:
    """A ``+08:00`` offset in a date survives into the next page's link."""
    since = (_when(0) + timedelta(hours=8)).strftime("ge%Y-%m-%dT%H:%M:%S+08:00")
    first = _search(server, [("date", since), ("agent", "clinic-a"), ("_count", "2")])
    assert [_name(trail, e) for e in first["entry"]] == ["e5", "e2"]
    with fhir_client(server, AUDITOR) as auditor:
        response = auditor.get(_link(first, "next"))
    assert response.status_code == 200, response.text
    assert [_name(trail, e) for e in response.json()["entry"]] == ["e1"]


def _name(trail: dict[str, str], entry: dict[str, Any]) -> str:
    names = {event_id: name for name, event_id in trail.items()}
    return names.get(entry["resource"]["id"], entry["resource"]["id"])


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


@pytest.mark.parametrize("query", ["foo=bar", "_sort=date", "date=yesterday", "date=xx2024-01-01",
                                   "_count=many", "patient:missing=true"])
def test_unsupported_search_is_400(server: str, database: Database, query: str) -> None:
    with fhir_client(server, AUDITOR) as auditor:
        response = auditor.get(f"/AuditEvent?{query}")
    assert_outcome(response, 400)


def test_read_one_event(server: str, trail: dict[str, str], database: Database) -> None:
    with fhir_client(server, AUDITOR) as auditor:
        response = auditor.get(f"/AuditEvent/{trail['e3']}")
        missing = auditor.get(f"/AuditEvent/{uuid.uuid4().hex}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    event = response.json()
    assert event["id"] == trail["e3"]
    assert event["action"] == "C" and subtype(event) == "create" and agent_id(event) == "clinic-b"
    assert objects_of(event) == ["Patient/p2"] and patients_of(event) == ["Patient/p2"]
    assert event["recorded"] == _when(2).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert_outcome(missing, 404)


def test_search_answers_events_just_recorded(server: str, database: Database) -> None:
    """The search writes the queue first: what happened a moment ago is in the answer."""
    reader = actor("fresh")
    patient_id = new_patient(server)
    with fhir_client(server, reader) as client:
        assert client.get(f"/Patient/{patient_id}").status_code == 200
    events_of(database, reader.client_id, 1)
    bundle = _search(server, {"agent": reader.client_id})
    assert bundle["total"] == 1
    assert patients_of(bundle["entry"][0]["resource"]) == [f"Patient/{patient_id}"]


# -- who may read and write the trail -------------------------------------------------------------


@pytest.mark.parametrize("principal", [APP, GOVERNANCE], ids=["app", "governance"])
def test_non_admins_cannot_read_the_trail(
    server: str, database: Database, trail: dict[str, str], principal: Principal
) -> None:
    with fhir_client(server, principal) as client:
        assert_outcome(client.get("/AuditEvent"), 403)
        assert_outcome(client.get("/AuditEvent", params={"patient": "p1"}), 403)
        assert_outcome(client.get(f"/AuditEvent/{trail['e1']}"), 403)
    refusals = events_of(database, principal.client_id, 3)
    assert [(e["action"], subtype(e), e["outcome"]) for e in refusals] == [
        ("E", "search-type", "4"), ("E", "search-type", "4"), ("R", "read", "4")]


def test_anonymous_cannot_read_the_trail(server: str, database: Database, trail: dict[str, str]) -> None:
    with httpx.Client(base_url=f"{server}/fhir", timeout=30) as anonymous:
        assert_outcome(anonymous.get("/AuditEvent"), 401)
        assert_outcome(anonymous.get(f"/AuditEvent/{trail['e1']}"), 401)


FORGED = {"resourceType": "AuditEvent", "type": {"system": DCM, "code": "110110"},
          "recorded": "2024-01-01T00:00:00Z", "agent": [{"requestor": True}],
          "source": {"observer": {"display": "forger"}}}


def _write_attempts(target: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name → (method, path, httpx keyword arguments)."""
    patch = [{"op": "replace", "path": "/action", "value": "R"}]
    return {
        "create": ("POST", "/AuditEvent", {"json": FORGED}),
        "update": ("PUT", f"/AuditEvent/{target}", {"json": {**FORGED, "id": target}}),
        "delete": ("DELETE", f"/AuditEvent/{target}", {}),
        "patch": ("PATCH", f"/AuditEvent/{target}",
                  {"json": patch, "headers": {"Content-Type": "application/json-patch+json"}}),
        "conditional-delete": ("DELETE", "/AuditEvent", {"params": {"agent": "clinic-a"}}),
        "conditional-update": ("PUT", "/AuditEvent", {"params": {"agent": "clinic-a"}, "json": FORGED}),
        "conditional-create": ("POST", "/AuditEvent", {"json": FORGED, "headers": {"If-None-Exist": "agent=x"}}),
        "transaction": ("POST", "", {"json": {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": FORGED, "request": {"method": "POST", "url": "AuditEvent"}}]}}),
    }


@pytest.mark.parametrize("attempt", list(_write_attempts("x")))
def test_nobody_writes_audit_events_through_the_api(
    server: str, database: Database, trail: dict[str, str], attempt: str
) -> None:
    target = trail["e1"]
    method, path, arguments = _write_attempts(target)[attempt]
    with fhir_client(server, ADMIN) as admin:
        response = admin.request(method, path, **arguments)
    if attempt == "patch":  # the trail is not in the FHIR store: 404 comes before the access check
        assert_outcome(response, response.status_code)
        assert response.status_code in (403, 404), response.text
    else:
        assert_outcome(response, 403)
    _assert_trail_untouched(server, database, trail)


def test_batch_cannot_delete_audit_events(server: str, database: Database, trail: dict[str, str]) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{trail['e1']}"}},
        {"resource": FORGED, "request": {"method": "POST", "url": "AuditEvent"}}]}
    with fhir_client(server, ADMIN) as admin:
        answer = admin.post("", json=batch)
    assert answer.status_code == 200, answer.text
    assert [e["response"]["status"][:3] for e in answer.json()["entry"]] == ["403", "403"]
    _assert_trail_untouched(server, database, trail)


def _assert_trail_untouched(server: str, database: Database, trail: dict[str, str]) -> None:
    with fhir_client(server, AUDITOR) as auditor:
        kept = auditor.get(f"/AuditEvent/{trail['e1']}")
    assert kept.status_code == 200 and kept.json()["action"] == "R"
    database.audit.flush()
    with database.engine.connect() as connection:
        ids = set(connection.execute(select(audit_table.c.event_id)).scalars().all())
        forgeries = connection.execute(
            select(func.count()).select_from(audit_table).where(audit_table.c.content.like("%forger%"))
        ).scalar_one()
    assert set(trail.values()) <= ids and forgeries == 0


# -- masking ------------------------------------------------------------------------------------


def test_query_is_masked_in_the_trail(server: str, database: Database) -> None:
    searcher = actor("front-desk")
    with fhir_client(server, searcher) as client:
        response = client.get(f"/Patient?identifier={ID_NUMBER}&name=张三&phone={MOBILE}")
    assert response.status_code == 200, response.text

    [event] = events_of(database, searcher.client_id, 1)
    with database.engine.connect() as connection:
        [content] = connection.execute(
            select(audit_table.c.content).where(audit_table.c.event_id == event["id"])
        ).scalars().all()
    encoded = query_entity(event)["query"]
    query = base64.b64decode(encoded).decode()
    everything = content + "\n" + query
    for plain in (ID_NUMBER, MOBILE, "张三", "19491231", "\\u5f20\\u4e09", "%E5%BC%A0%E4%B8%89"):
        assert plain not in everything, plain
    values = dict(parse_qsl(query))
    assert values["identifier"] == "110105********002X"
    assert values["name"] == "张*"
    assert "12345678" not in values["phone"] and values["phone"] in ("138****5678", "1***")


def test_query_with_system_and_modifier_is_masked(server: str, database: Database) -> None:
    searcher = actor("front-desk-2")
    with fhir_client(server, searcher) as client:
        response = client.get("/Patient", params=[("identifier", f"urn:oid:2.16.156.10011.1.3|{ID_NUMBER}"),
                                                  ("telecom", f"phone|{MOBILE}"), ("name:contains", "欧阳娜娜")])
    assert response.status_code == 200, response.text
    [event] = events_of(database, searcher.client_id, 1)
    query = base64.b64decode(query_entity(event)["query"]).decode()
    everything = json.dumps(event, ensure_ascii=False) + query
    for plain in (ID_NUMBER, MOBILE, "欧阳娜娜"):
        assert plain not in everything, plain
    values = dict(parse_qsl(query))
    assert values["identifier"] == "urn:oid:2.16.156.10011.1.3|110105********002X"
    assert values["name:contains"] == "欧**娜"


# -- retention ----------------------------------------------------------------------------------


def _row(recorded: datetime, client_id: str) -> AuditRow:
    return audit_row(AuditRecord("GET", "/fhir/Patient/p1", "", "10.0.0.1", client_id=client_id, status=200,
                                 recorded=recorded))


def _stored_clients(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return sorted(connection.execute(select(audit_table.c.client_id)).scalars().all())


def test_events_past_retention_are_purged(database: Database) -> None:
    now = datetime.now(timezone.utc)
    database.audit.record(_row(now - timedelta(days=181), "old"))
    database.audit.record(_row(now - timedelta(days=179), "recent"))
    database.audit.record(_row(now - timedelta(minutes=1), "today"))
    database.audit.flush()
    assert _stored_clients(database) == ["old", "recent", "today"]

    assert database.audit.purge_expired(now.timestamp()) == 1
    assert _stored_clients(database) == ["recent", "today"]
    with database.engine.connect() as connection:
        orphans = connection.execute(
            select(func.count()).select_from(audit_patient)
            .where(audit_patient.c.event_id.not_in(select(audit_table.c.event_id)))
        ).scalar_one()
    assert orphans == 0

    assert database.audit.purge_expired(now.timestamp()) == 0
    in_181_days = (now + timedelta(days=181)).timestamp()
    assert database.audit.purge_expired(in_181_days) == 2
    assert _stored_clients(database) == []


def test_purge_keeps_the_boundary_day(database: Database) -> None:
    now = datetime.now(timezone.utc)
    database.audit.record(_row(now - timedelta(days=180) + timedelta(minutes=5), "inside"))
    database.audit.record(_row(now - timedelta(days=180) - timedelta(minutes=5), "outside"))
    database.audit.flush()
    assert database.audit.retention_days == 180
    assert database.audit.purge_expired(now.timestamp()) == 1
    assert _stored_clients(database) == ["inside"]


def test_served_events_are_purged_after_retention(server: str, database: Database) -> None:
    reader = actor("long-ago")
    patient_id = new_patient(server)
    with fhir_client(server, reader) as client:
        assert client.get(f"/Patient/{patient_id}").status_code == 200
    events_of(database, reader.client_id, 1)
    assert database.audit.purge_expired(time.time() + 179 * 86400) == 0
    assert len(events_of(database, reader.client_id, 1)) == 1
    assert database.audit.purge_expired(time.time() + 181 * 86400) >= 2
    assert all_events(database) == []


@pytest.mark.parametrize("days", [0, 30, 179])
def test_retention_below_180_days_is_refused(days: int) -> None:
    with pytest.raises(ValueError, match="180"):
        Settings(audit_retention_days=days)


def test_retention_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_AUDIT_RETENTION_DAYS", "179")
    with pytest.raises(ValueError, match="HUB_AUDIT_RETENTION_DAYS"):
        Settings.from_env()
    monkeypatch.setenv("HUB_AUDIT_RETENTION_DAYS", "365")
    settings = Settings.from_env()
    assert settings.audit_retention_days == 365


def test_database_purges_by_configured_retention(settings: Settings, database: Database) -> None:
    longer = Database(dataclasses.replace(settings, audit_retention_days=365), engine=database.engine)
    try:
        assert longer.audit.retention_days == 365
        now = datetime.now(timezone.utc)
        longer.audit.record(_row(now - timedelta(days=200), "kept-for-a-year"))
        longer.audit.record(_row(now - timedelta(days=366), "past-a-year"))
        longer.audit.flush()
        assert longer.audit.purge_expired(now.timestamp()) == 1
        assert _stored_clients(database) == ["kept-for-a-year"]
    finally:
        longer.audit.stop()


def test_one_unstorable_event_does_not_block_the_trail(database: Database) -> None:
    """A value the database refuses (PostgreSQL text cannot hold NUL) loses that event alone."""
    good = audit_row(_record(1, "good-client", "GET", "/fhir/Patient/p1", 200))
    poison = dataclasses.replace(audit_row(_record(1, "bad-client", "GET", "/fhir/Patient/p2", 200)),
                                 entity="Patient/\x00")
    database.audit.record(poison)
    database.audit.record(good)
    database.audit.flush()
    with database.engine.connect() as connection:
        clients = set(connection.execute(select(audit_table.c.client_id)).scalars())
    assert "good-client" in clients
    database.audit.record(audit_row(_record(0, "later-client", "GET", "/fhir/Patient", 200)))
    database.audit.flush()
    with database.engine.connect() as connection:
        assert "later-client" in set(connection.execute(select(audit_table.c.client_id)).scalars())


def test_malformed_event_id_is_400(server: str, database: Database) -> None:
    with fhir_client(server, AUDITOR) as client:
        assert_outcome(client.get("/AuditEvent/%00"), 400, contains="Invalid resource id")
        assert_outcome(client.get("/AuditEvent/" + "a" * 65), 400)
