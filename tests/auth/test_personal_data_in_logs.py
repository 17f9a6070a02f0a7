"""PII never appears unmasked in captured logs, error answers or the database.

A realistic session runs against a real uvicorn server configured as ``hub serve`` configures
it (``hub.privacy.logging_config()``, uvicorn's access log on, everything at DEBUG): a Patient
with a citizen ID number and a mobile number is created, read and searched; invalid bodies,
malformed searches, conditional writes, a 404 and server errors carry both numbers. Every log
record, every error body and every stored row is then checked for the plain numbers.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import String, Text, select
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.config import Settings
from hub.fhir.service import FhirService
from hub.privacy import MaskingFormatter, logging_config
from hub.store.database import Database
from hub.store.tables import (
    INDEX_TABLES,
    audit_event,
    audit_patient,
    resource,
    resource_version,
)
from tests.conftest import FHIR_JSON, _free_port, bearer

ID_NUMBER = "11010519491231002X"
MOBILE = "13812345678"
CITIZEN_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"
#: The plain values (and the birth date an ID number gives away) that must never be stored or logged.
PLAIN = (ID_NUMBER, ID_NUMBER.lower(), MOBILE)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Capture(logging.Handler):
    """Keeps every record (as pytest's caplog does)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._mutex:
            self.records.append(record)


@dataclass
class Session:
    records: list[logging.LogRecord]
    #: What the handler ``logging_config()`` installs wrote (stderr in production).
    served_log: str
    #: (label, response) of every request made.
    responses: list[tuple[str, httpx.Response]]
    #: (table, column, value) of every text value stored after the session.
    stored: list[tuple[str, str, str]] = field(default_factory=list)


_LOGGERS = ("", "hub", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "alembic")


@pytest.fixture(scope="module")
def session(settings: Settings, database: Database) -> Iterator[Session]:
    # The table-emptying fixture runs for each test, so the whole session (and a snapshot of
    # the stored rows) happens here, once, before the tests look at it.
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate, logging.getLogger(name).disabled) for name in _LOGGERS}
    _empty(database)
    port = _free_port()
    config = uvicorn.Config(create_app(settings, database), host="127.0.0.1", port=port, lifespan="off",
                            log_config=logging_config(), log_level="debug", access_log=True)
    root = logging.getLogger()
    served = io.StringIO()
    for handler in root.handlers:  # the masked stderr handler of logging_config()
        assert isinstance(handler.formatter, MaskingFormatter)
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(served)
    capture = _Capture()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ("hub", "uvicorn"):
            logger.disabled = False
    logging.getLogger("hub").setLevel(logging.DEBUG)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        responses = _run_session(f"http://127.0.0.1:{port}", settings, database)
        time.sleep(0.2)  # audit events are recorded just after each response
        database.audit.flush()
        stored = _stored_text(database)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        root.removeHandler(capture)
        for name, (handlers, level, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled
    yield Session(capture.records, served.getvalue(), responses, stored)


def _empty(database: Database) -> None:
    from hub.store.schema import metadata

    database.audit.flush()
    with database.engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(table.delete())


def _patient_with_numbers(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CITIZEN_ID_SYSTEM, "value": ID_NUMBER},
                       {"system": "urn:hub:mrn:org-ks-1", "value": "MRN-0042"}],
        "name": [{"text": "张三", "family": "张", "given": ["三"]}],
        "telecom": [{"system": "phone", "value": MOBILE, "use": "mobile"}],
        "gender": "male",
        **extra,
    }


def _run_session(root: str, settings: Settings, database: Database) -> list[tuple[str, httpx.Response]]:
    responses: list[tuple[str, httpx.Response]] = []
    headers = {"Content-Type": FHIR_JSON, **bearer()}
    with httpx.Client(base_url=f"{root}/fhir", headers=headers, timeout=60) as fhir:

        def call(label: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
            response = fhir.request(method, url, **kwargs)
            responses.append((label, response))
            return response

        created = call("create", "POST", "/Patient", json=_patient_with_numbers())
        assert created.status_code == 201, created.text
        patient_id = created.json()["id"]
        read = call("read", "GET", f"/Patient/{patient_id}")
        assert read.status_code == 200 and ID_NUMBER in read.text and MOBILE in read.text  # served decrypted
        observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                       "subject": {"reference": f"Patient/{patient_id}"}}
        assert call("observation", "POST", "/Observation", json=observation).status_code == 201

        # invalid bodies carrying the numbers
        call("bad gender", "POST", "/Patient",
             json=_patient_with_numbers(gender="bogus", name=[{"text": f"张三 {ID_NUMBER} {MOBILE}"}]))
        call("id number as gender", "POST", "/Patient", json=_patient_with_numbers(gender=ID_NUMBER))
        call("id number as birthDate", "POST", "/Patient", json=_patient_with_numbers(birthDate=ID_NUMBER))
        call("phone as birthDate", "POST", "/Patient", json=_patient_with_numbers(birthDate=MOBILE))
        call("id number as element", "POST", "/Patient", json={**_patient_with_numbers(), ID_NUMBER: MOBILE})
        call("unknown type", "POST", f"/Patient{ID_NUMBER}", json=_patient_with_numbers())
        call("broken json", "POST", "/Patient",
             content=f'{{"resourceType":"Patient","identifier":[{{"value":"{ID_NUMBER}"}}],"telecom":"{MOBILE}'.encode())
        call("wrong id in update", "PUT", f"/Patient/{patient_id}", json=_patient_with_numbers(id=ID_NUMBER))
        call("id number as id", "PUT", f"/Patient/{ID_NUMBER}-{MOBILE}", json=_patient_with_numbers())
        call("bad patch", "PATCH", f"/Patient/{patient_id}",
             json=[{"op": "test", "path": "/telecom/0/value", "value": ID_NUMBER}],
             headers={"Content-Type": "application/json-patch+json"})
        bad_bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient_with_numbers(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": _patient_with_numbers(birthDate=ID_NUMBER), "request": {"method": "POST", "url": "Patient"}},
        ]}
        call("bad transaction", "POST", "", json=bad_bundle)
        bad_batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Patient?birthdate={ID_NUMBER}"}},
            {"request": {"method": "GET", "url": f"Patient/{ID_NUMBER}"}},
            {"resource": _patient_with_numbers(gender=MOBILE), "request": {"method": "POST", "url": "Patient"}},
        ]}
        call("bad batch", "POST", "", json=bad_batch)

        # searches with the numbers, good and malformed
        found = call("search by id number", "GET", "/Patient", params={"identifier": f"{CITIZEN_ID_SYSTEM}|{ID_NUMBER}"})
        assert found.status_code == 200 and found.json()["total"] == 1, found.text
        found = call("search by phone", "GET", "/Patient", params={"phone": MOBILE})
        assert found.status_code == 200 and found.json()["total"] == 1, found.text
        call("search by plain id", "GET", "/Patient", params={"identifier": ID_NUMBER, "name": "张三"})
        call("search by telecom", "GET", "/Patient", params={"telecom": f"phone|{MOBILE}"})
        call("chained", "GET", "/Observation", params={"subject:Patient.identifier": ID_NUMBER})
        call("malformed date", "GET", "/Patient", params={"birthdate": ID_NUMBER})
        call("malformed date with prefix", "GET", "/Patient", params={"birthdate": f"ge{MOBILE}"})
        call("malformed count", "GET", "/Patient", params={"_count": ID_NUMBER})
        call("unknown parameter", "GET", "/Patient", params={ID_NUMBER: MOBILE})
        call("unknown modifier", "GET", "/Patient", params={"identifier:bogus": ID_NUMBER})
        call("bad sort", "GET", "/Patient", params={"_sort": ID_NUMBER})
        call("bad reference", "GET", "/Observation", params={"subject": f"Patient/{ID_NUMBER}/x/{MOBILE}"})
        call("bad include", "GET", "/Patient", params={"_include": f"Patient:{ID_NUMBER}"})
        call("form search", "POST", "/Patient/_search", content=f"identifier={ID_NUMBER}&birthdate={MOBILE}",
             headers={"Content-Type": "application/x-www-form-urlencoded"})

        # conditional interactions
        again = call("conditional create", "POST", "/Patient", json=_patient_with_numbers(),
                     headers={"If-None-Exist": f"identifier={CITIZEN_ID_SYSTEM}|{ID_NUMBER}"})
        assert again.status_code == 200, again.text  # the patient exists: nothing created
        call("conditional create, malformed", "POST", "/Patient", json=_patient_with_numbers(),
             headers={"If-None-Exist": f"birthdate={ID_NUMBER}"})
        call("conditional update", "PUT", "/Patient", params={"identifier": f"{CITIZEN_ID_SYSTEM}|{ID_NUMBER}"},
             json=_patient_with_numbers(gender="male"))
        call("conditional update, two ids", "PUT", "/Patient", params={"phone": MOBILE},
             json=_patient_with_numbers(id=ID_NUMBER))
        call("conditional delete, malformed", "DELETE", "/Patient", params={"birthdate": MOBILE})

        # a resource id that is an ID number
        call("404 read", "GET", f"/Patient/{ID_NUMBER}")
        call("404 history", "GET", f"/Patient/{ID_NUMBER}/_history/1")
        call("404 everything", "GET", f"/Patient/{ID_NUMBER}/$everything")

    # failed logins with the numbers as credentials
    with httpx.Client(base_url=root, timeout=60) as plain:
        responses.append(("token, id number as client", plain.post(
            "/auth/token", auth=(ID_NUMBER, MOBILE), data={"grant_type": "client_credentials"})))
        responses.append(("no token", plain.get(f"/fhir/Patient/{ID_NUMBER}", params={"phone": MOBILE})))

    # unexpected failures whose messages carry the numbers
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"lookup of 身份证 {ID_NUMBER} / 手机 {MOBILE} failed")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FhirService, "read", explode)
        patch.setattr(FhirService, "search", explode)
        client = TestClient(create_app(settings, database), raise_server_exceptions=False)
        for label, url in (("500 read", f"/fhir/Patient/{ID_NUMBER}"),
                           ("500 search", f"/fhir/Patient?identifier={ID_NUMBER}&phone={MOBILE}")):
            response = client.get(url, headers=bearer())
            assert response.status_code == 500, response.text
            responses.append((label, response))
    return responses


def _stored_text(database: Database) -> list[tuple[str, str, str]]:
    """Every text value of the resource, version, search-index and audit tables."""
    tables = [resource, resource_version, *INDEX_TABLES.values(), audit_event, audit_patient]
    stored = []
    with database.engine.connect() as connection:
        for table in tables:
            columns = [c for c in table.columns if isinstance(c.type, (String, Text))]
            for row in connection.execute(select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        stored.append((table.name, column.name, str(value)))
    return stored


#: Loggers of the test's own HTTP clients (not the hub's).
_CLIENT_SIDE = ("httpx", "httpcore")


def _leaks(text: str) -> list[str]:
    return [plain for plain in PLAIN if plain in text]


def _excerpt(text: str) -> str:
    at = min(text.find(plain) for plain in _leaks(text))
    return ("…" if at > 60 else "") + text[max(0, at - 60):at + 80] + ("…" if len(text) > at + 80 else "")


# -- the session happened as intended ---------------------------------------------------------------


def test_session_covers_errors_and_logs(session: Session) -> None:
    statuses = {label: response.status_code for label, response in session.responses}
    assert statuses["create"] == 201 and statuses["conditional create"] == 200
    for label in ("bad gender", "id number as gender", "id number as birthDate", "malformed date",
                  "malformed count", "unknown parameter", "conditional create, malformed", "bad transaction"):
        assert statuses[label] == 400, (label, statuses[label])
    assert statuses["404 read"] == 404 and statuses["token, id number as client"] == 401
    assert statuses["500 read"] == 500 and statuses["500 search"] == 500
    loggers = {record.name for record in session.records}
    assert "hub.api" in loggers, loggers  # the unhandled errors were logged (with their tracebacks)
    assert any(r.exc_info for r in session.records if r.name == "hub.api")
    assert "uvicorn.access" in loggers, loggers
    assert "unhandled error" in session.served_log and "Traceback" in session.served_log
    tables = {table for table, _column, _value in session.stored}
    assert {"hub_resource", "hub_resource_version", "hub_idx_token", "hub_audit_event"} <= tables


# -- logs ---------------------------------------------------------------------------------------------


def test_served_log_output_is_masked(session: Session) -> None:
    """What the configured handler (stderr under ``hub serve``) wrote."""
    assert _leaks(session.served_log) == [], [line for line in session.served_log.splitlines() if _leaks(line)]
    assert "110105********002X" in session.served_log  # the numbers were there, masked


def test_every_captured_record_is_masked_when_formatted(session: Session) -> None:
    formatter = MaskingFormatter(FORMAT)
    leaking = [(record.name, formatter.format(record)) for record in session.records
               if _leaks(formatter.format(record))]
    assert leaking == []


def test_the_hub_builds_its_own_log_messages_masked(session: Session) -> None:
    """The hub's own loggers mask at the source; only uvicorn's access log (off under ``hub serve``)
    writes raw request lines, which the formatter masks."""
    formatter = MaskingFormatter("%(message)s")
    raw = [record for record in session.records
           if _leaks(record.getMessage()) and not record.name.startswith(_CLIENT_SIDE)]
    assert [(r.name, r.getMessage()[:160]) for r in raw if not r.name.startswith("uvicorn.access")] == []
    assert [formatter.format(record) for record in raw if _leaks(formatter.format(record))] == []


# -- answers ----------------------------------------------------------------------------------------


def test_error_answers_do_not_carry_the_numbers(session: Session) -> None:
    leaking = []
    for label, response in session.responses:
        if response.status_code >= 400 or '"OperationOutcome"' in response.text:
            if _leaks(response.text) or any(_leaks(v) for v in response.headers.values()):
                leaking.append((label, response.status_code, response.text[:500]))
    assert leaking == []


def test_batch_entry_outcomes_do_not_carry_the_numbers(session: Session) -> None:
    [batch] = [response for label, response in session.responses if label == "bad batch"]
    assert batch.status_code == 200, batch.text
    outcomes = [e["response"].get("outcome") or e.get("resource") for e in batch.json()["entry"]]
    assert [e["response"]["status"][:3] for e in batch.json()["entry"]] == ["400", "404", "400"]
    assert all(_leaks(str(outcome)) == [] for outcome in outcomes), outcomes


# -- storage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tables", [
    ("hub_resource", "hub_resource_version"),
    tuple(table.name for table in INDEX_TABLES.values()),
    ("hub_audit_event", "hub_audit_patient"),
], ids=["resources", "search-indexes", "audit-trail"])
def test_database_holds_no_plain_numbers(session: Session, tables: tuple[str, ...]) -> None:
    checked = [(table, column, value) for table, column, value in session.stored if table in tables]
    assert checked, tables
    leaking = [f"{table}.{column}: {_excerpt(value)}" for table, column, value in checked if _leaks(value)]
    assert not leaking, f"{len(leaking)} stored values hold plain numbers:\n" + "\n".join(leaking)


def _audit_contents(session: Session) -> list[dict[str, Any]]:
    return [json.loads(value) for table, column, value in session.stored
            if table == "hub_audit_event" and column == "content"]


def test_every_request_of_the_session_is_in_the_trail(session: Session) -> None:
    assert len(_audit_contents(session)) == len(session.responses)


def test_audited_queries_are_masked(session: Session) -> None:
    queries = [base64.b64decode(entity["query"]).decode()
               for event in _audit_contents(session) for entity in event["entity"] if "query" in entity]
    assert len(queries) > 10
    leaking = [query for query in queries if _leaks(query)]
    assert not leaking, f"entity.query holds plain numbers: {leaking}"


def test_audit_events_hold_no_plain_numbers(session: Session) -> None:
    leaking = []
    for event in _audit_contents(session):
        text = json.dumps(event, ensure_ascii=False)
        if _leaks(text):
            where = [e.get("what", {}).get("reference") or e.get("description") for e in event["entity"]
                     if _leaks(json.dumps(e, ensure_ascii=False))]
            leaking.append(f"{event['subtype'][0]['code']} {event['outcomeDesc']}: {where}")
    assert not leaking, f"{len(leaking)} AuditEvents hold plain numbers:\n" + "\n".join(leaking)
