"""Sources, runs and quarantine over real HTTP, and the ``hub sources``/``hub ingest`` commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from adapters.frontdb.schema import ddl_statements
from hub.auth.roles import Role
from hub.config import Settings
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import bearer
from tests.ingest.conftest import INSTITUTION, OTHER_INSTITUTION, count, patient_row
from tests.ingest.sources import create_database, insert_rows, run_script

ADMIN_A = principal(Role.SOURCE_ADMIN, institutions=(INSTITUTION,), client_id="it-a")
ADMIN_B = principal(Role.SOURCE_ADMIN, institutions=(OTHER_INSTITUTION,), client_id="it-b")
APP = principal(Role.APP, client_id="some-app")


def _client(server: str, who) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=server, headers=bearer(who), timeout=60)


def _frontdb(name: str, patients: int = 3) -> str:
    connection = create_database("postgresql", name)
    run_script(connection, ddl_statements("postgresql"))
    insert_rows(connection, "hdr_patient", [patient_row(n) for n in range(1, patients + 1)]
                + [patient_row(99, id_card_no="110105194912310021")])
    return connection


def _body(source_id: str, institution: str, connection: str) -> dict:
    return {"source_id": source_id, "institution": institution, "system_kind": "HIS", "adapter": "frontdb",
            "connection": connection + "PWD=Top-Secret-1;", "schedule": "0 2 * * *"}


def test_hospital_it_registers_tests_and_runs_its_source(server: str, database: Database, institutions: None) -> None:
    connection = _frontdb("hub_src_api_a")
    with _client(server, ADMIN_A) as it_a:
        created = it_a.post("/admin/sources", json=_body("api-a", INSTITUTION, connection))
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/admin/sources/api-a"
        assert "Top-Secret-1" not in created.text and "PWD=***" in created.json()["connection"]
        assert "Top-Secret-1" not in it_a.get("/admin/sources/api-a").text
        tested = it_a.post("/admin/sources/api-a/$test-connection").json()
        assert tested["ok"] is True and tested["reason"] == "ok"
        started = it_a.post("/admin/sources/api-a/$ingest")
        assert started.status_code == 202 and started.headers["location"] == f"/admin/runs/{started.json()['run_id']}"
        deadline = time.monotonic() + 30
        while (run := it_a.get(started.headers["location"]).json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert (run["status"], run["created"], run["quarantined"]) == ("succeeded", 3, 1)
        assert [r["run_id"] for r in it_a.get("/admin/sources/api-a/runs").json()] == [run["run_id"]]
        (entry,) = it_a.get("/admin/sources/api-a/quarantine").json()
        assert entry["source_key"] == "P0099" and "check character" in entry["reason"]
        assert "raw" not in entry and "110105194912310021" not in str(entry)  # no personal data over the API
        changed = it_a.put("/admin/sources/api-a", json={"enabled": False})
        assert changed.json()["enabled"] is False and changed.json()["schedule"] == "0 2 * * *"
        assert it_a.post("/admin/sources/api-a/$test-connection").json()["ok"] is True  # the connection was kept
        replayed = it_a.post("/admin/sources/api-a/quarantine/$replay").json()
        assert (replayed["replayed"], replayed["quarantined"]) == (1, 1)  # still bad: it stays quarantined
        (entry,) = it_a.get("/admin/sources/api-a/quarantine").json()
        assert it_a.post(f"/admin/sources/api-a/quarantine/{entry['id'] + 1000}/$discard").status_code == 404
        discarded = it_a.post(f"/admin/sources/api-a/quarantine/{entry['id']}/$discard")
        assert discarded.json() == {"id": entry["id"], "status": "discarded"}
        assert it_a.get("/admin/sources/api-a/quarantine").json() == []
        assert [e["id"] for e in it_a.get("/admin/sources/api-a/quarantine?status=discarded").json()] == [entry["id"]]
    assert count(database, "Patient") == 3


def test_an_institution_cannot_see_or_touch_another_institutions_sources(
    server: str, database: Database, institutions: None
) -> None:
    connection = _frontdb("hub_src_api_b")
    with _client(server, ADMIN_A) as it_a, _client(server, ADMIN_B) as it_b:
        assert it_a.post("/admin/sources", json=_body("src-a", INSTITUTION, connection)).status_code == 201
        refused = it_b.post("/admin/sources", json=_body("src-b", INSTITUTION, connection))
        assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
        assert it_b.post("/admin/sources", json=_body("src-b", OTHER_INSTITUTION, connection)).status_code == 201
        assert [s["source_id"] for s in it_a.get("/admin/sources").json()] == ["src-a"]
        assert [s["source_id"] for s in it_b.get("/admin/sources").json()] == ["src-b"]
        for method, path in (("GET", "/admin/sources/src-a"), ("PUT", "/admin/sources/src-a"),
                             ("POST", "/admin/sources/src-a/$ingest"), ("GET", "/admin/sources/src-a/quarantine"),
                             ("POST", "/admin/sources/src-a/$test-connection"), ("DELETE", "/admin/sources/src-a")):
            answer = it_b.request(method, path, json={} if method == "PUT" else None)
            assert answer.status_code == 404, (method, path, answer.text)
        moved = it_a.put("/admin/sources/src-a", json={"institution": OTHER_INSTITUTION})
        assert moved.status_code == 403
    with _client(server, APP) as app:
        assert app.get("/admin/sources").status_code == 403
    with httpx.Client(base_url=server, timeout=30) as anonymous:
        assert anonymous.get("/admin/sources").status_code == 401


def test_bad_registrations_get_an_operation_outcome(server: str, database: Database, institutions: None) -> None:
    with _client(server, ADMIN_A) as it_a:
        for body, needle in (
            ({"source_id": "X!", "institution": INSTITUTION}, "source_id"),
            ({"source_id": "ok-id", "institution": INSTITUTION, "system_kind": "XYZ"}, "system_kind"),
            ({"source_id": "ok-id", "institution": INSTITUTION, "system_kind": "LIS", "adapter": "nope"}, "adapter"),
            ({"source_id": "ok-id", "institution": INSTITUTION, "system_kind": "LIS", "adapter": "frontdb",
              "connection": "DSN=x", "schedule": "61 * * * *"}, "schedule"),
            ({"source_id": "ok-id", "institution": INSTITUTION, "system_kind": "LIS", "adapter": "frontdb",
              "connection": "DSN=x", "options": {"password": "x"}}, "options"),
        ):
            answer = it_a.post("/admin/sources", json=body)
            assert answer.status_code == 400, answer.text
            assert needle in answer.text and answer.json()["resourceType"] == "OperationOutcome"
        duplicate = {"source_id": "dup", "institution": INSTITUTION, "system_kind": "LIS", "adapter": "frontdb",
                     "connection": "DSN=x"}
        assert it_a.post("/admin/sources", json=duplicate).status_code == 201
        assert it_a.post("/admin/sources", json=duplicate).status_code == 409
    with _client(server, principal(Role.ADMIN)) as admin:
        missing = admin.post("/admin/sources", json={**duplicate, "source_id": "nowhere", "institution": "org-none"})
        assert missing.status_code == 400 and "hub registry load" in missing.text


def test_the_commands(database: Database, institutions: None, settings: Settings) -> None:
    connection = _frontdb("hub_src_cli", patients=5)
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_KEY_DIR": settings.key_dir,
           "HUB_SOURCE_CONNECTION": connection, "COLUMNS": "200"}
    hub = str(Path(sys.executable).with_name("hub"))

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([hub, *args], env=env, capture_output=True, text=True, timeout=120)

    added = call("sources", "add", "--id", "cli-src", "--institution", INSTITUTION, "--kind", "EMR",
                 "--adapter", "frontdb", "--schedule", "*/10 * * * *")
    assert added.returncode == 0, added.stderr
    assert "Registered cli-src" in added.stdout
    tested = call("sources", "test", "cli-src")
    assert tested.returncode == 0 and "OK" in tested.stdout
    ran = call("ingest", "run", "cli-src")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "succeeded" in ran.stdout and "created 5" in ran.stdout and "quarantined 1" in ran.stdout
    listed = call("ingest", "quarantine", "cli-src")
    assert "P0099" in listed.stdout and "110105194912310021" not in listed.stdout + listed.stderr
    assert "cli-src" in call("ingest", "runs").stdout
    listed_sources = call("sources", "list").stdout
    assert "cli-src" in listed_sources and "PWD" not in listed_sources
    assert "reset 1 watermarks" in call("ingest", "reset", "cli-src").stdout
    again = call("ingest", "run", "cli-src")
    assert "unchanged 5" in again.stdout and "created 0" in again.stdout
    with database.ingest_state(write=False) as state:
        (entry,) = state.entries("cli-src")
    assert "discarded 1 of 1" in call("ingest", "discard", str(entry["q_id"])).stdout
    assert "removed cli-src" in call("sources", "remove", "cli-src").stdout
    broken = call("sources", "add", "--id", "cli-bad", "--institution", "org-none", "--kind", "EMR",
                  "--adapter", "frontdb")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr + broken.stdout


def test_only_an_admin_registers_a_source_that_opens_a_local_file(server: str, database: Database,
                                                                   institutions: None) -> None:
    body = {"source_id": "local-file", "institution": INSTITUTION, "system_kind": "EMR", "adapter": "frontdb",
            "connection": "DRIVER={SQLite3};DATABASE=/var/lib/hub/hub.db;"}
    with _client(server, ADMIN_A) as it_a:
        refused = it_a.post("/admin/sources", json=body)
        assert refused.status_code == 403 and "admin" in refused.text
        assert it_a.post("/admin/sources", json={**body, "connection": "sqlite:////var/lib/hub/hub.db"}).status_code == 403
    with _client(server, principal(Role.ADMIN)) as admin:
        assert admin.post("/admin/sources", json=body).status_code == 201
    with _client(server, ADMIN_A) as it_a:
        assert it_a.put("/admin/sources/local-file", json={"connection": "DRIVER={SQLite3};DATABASE=/x"}).status_code == 403
