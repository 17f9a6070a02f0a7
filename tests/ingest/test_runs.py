"""Runs: connection problems with clear reasons, retries with backoff, one run per source, scheduling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.base import ConnectionProblem
from hub.errors import InvalidRequest
from hub.fhir.instants import now_utc
from hub.ingest.pipeline import IngestBusy, IngestOptions, IngestRun, holder_name
from hub.ingest.scheduler import IngestScheduler
from hub.registry.sources import change_source, check_connection, open_adapter
from hub.store.database import Database
from tests.ingest.conftest import count, patient_row, register, run
from tests.ingest.sources import MARIADB, POSTGRES, create_database, execute, insert_rows


@pytest.mark.parametrize(("connection", "reason"), [
    ("DRIVER={No Such Driver};SERVER=127.0.0.1;", "driver-missing"),
    ("DSN=not-configured-anywhere", "driver-missing"),
    ("DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=1;UID=root;PWD=;DATABASE=test;", "host-unreachable"),
    ("DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=S3cret-Pw;DATABASE=test;", "login-failed"),
    ("DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=nobody_here;PWD=S3cret-Pw;DATABASE=test;",
     "login-failed"),
    (f"{POSTGRES}DATABASE=no_such_database_here;", "database-missing"),
    (f"{MARIADB}DATABASE=no_such_database_here;", "database-missing"),
])
def test_connection_problems_have_a_reason_and_no_secret(database: Database, institutions: None, connection: str,
                                                         reason: str) -> None:
    source = register(database, "broken", "frontdb", connection)
    report = check_connection(source)
    assert (report.ok, report.reason) == (False, reason), report.message
    assert "S3cret" not in report.message and "PWD" not in report.message


def test_missing_tables_and_columns_are_named(database: Database, institutions: None) -> None:
    connection = create_database("mariadb", "hub_src_schema_check")
    source = register(database, "schema-check", "frontdb", connection)
    report = check_connection(source)
    assert (report.ok, report.reason) == (False, "schema-mismatch")
    assert "Patient" in report.message and "hdr_patient" in report.message
    execute(connection, "CREATE TABLE hdr_patient (patient_id VARCHAR(64), name VARCHAR(50), update_time DATETIME)")
    report = check_connection(source)
    assert report.reason == "schema-mismatch" and "sex_code" in report.message


def test_an_unreachable_source_is_retried_then_the_run_fails_and_the_watermark_stays(
    database: Database, institutions: None
) -> None:
    connection = create_database("postgresql", "hub_src_retry")
    from adapters.frontdb.schema import ddl_statements
    from tests.ingest.sources import run_script

    run_script(connection, ddl_statements("postgresql"))
    insert_rows(connection, "hdr_patient", [patient_row(1)])
    source = register(database, "retry", "frontdb", connection)
    assert run(database, source).counts.created == 1
    with database.ingest_state(write=False) as state:
        before = state.positions("retry")
    moved = change_source(database, "retry", {"connection": connection.replace("PORT=5432", "PORT=1")})
    waits: list[float] = []
    options = IngestOptions(attempts=3, backoff_seconds=0.5, sleep=waits.append)
    result = IngestRun(database, moved, open_adapter, options=options).run()
    assert result.status == "failed" and result.error is not None
    assert result.error.startswith("host-unreachable") and result.attempts == 3
    assert waits == [0.5, 1.0]  # exponential backoff between the attempts
    with database.ingest_state(write=False) as state:
        assert state.positions("retry") == before
        stored = state.run(result.run_id)
    assert stored is not None and (stored["status"], stored["attempts"]) == ("failed", 3)


def test_a_broken_profile_is_a_configuration_problem_not_retried(database: Database, institutions: None,
                                                                 tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "broken.yaml"
    profile.write_text("profile: x\nversion: '1'\nrecords: {Patient: {query: SELECT 1}}\n", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="'key' is required"):
        register(database, "broken-profile", "sql-profile", "DSN=x", options={"profile": str(profile)})


def test_one_run_per_source_at_a_time(database: Database, institutions: None) -> None:
    source = register(database, "locked", "frontdb", f"{MARIADB}DATABASE=test;")
    first = IngestRun(database, source, open_adapter)
    first.begin("manual")
    with pytest.raises(IngestBusy, match="being ingested by run"):
        IngestRun(database, source, open_adapter).run()
    first._end("succeeded", None)  # noqa: SLF001 - release as a finished run does
    second = IngestRun(database, source, open_adapter)
    assert second.begin("manual") > 0
    second._end("succeeded", None)  # noqa: SLF001


def test_an_expired_lease_or_a_dead_holder_is_taken_over(database: Database, institutions: None) -> None:
    source = register(database, "stale", "frontdb", f"{MARIADB}DATABASE=test;")
    with database.ingest_state(write=True) as state:
        run_id = state.start_run("stale", "manual", "other-host:1", now_utc())
        assert state.acquire("stale", run_id, "other-host:1", now_utc() - timedelta(seconds=300), 60)
    taker = IngestRun(database, source, open_adapter)
    taker.begin("manual")  # the lease expired four minutes ago
    taker._end("succeeded", None)  # noqa: SLF001
    with database.ingest_state(write=True) as state:
        assert state.run(run_id)["status"] == "interrupted"  # type: ignore[index]
        dead = f"{holder_name().rpartition(':')[0]}:999999"  # this host, a pid that does not exist
        run_id = state.start_run("stale", "manual", dead, now_utc())
        assert state.acquire("stale", run_id, dead, now_utc(), 600)
    taker = IngestRun(database, source, open_adapter)
    taker.begin("manual")
    taker._end("succeeded", None)  # noqa: SLF001


def test_the_scheduler_follows_the_registry(database: Database, institutions: None) -> None:
    connection = create_database("mariadb", "hub_src_scheduled")
    from adapters.frontdb.schema import ddl_statements
    from tests.ingest.sources import run_script

    run_script(connection, ddl_statements("mariadb"))
    insert_rows(connection, "hdr_patient", [patient_row(1), patient_row(2)])
    register(database, "scheduled", "frontdb", connection, schedule="*/5 * * * *")
    register(database, "manual-only", "frontdb", connection)
    with pytest.raises(InvalidRequest, match="schedule"):
        change_source(database, "manual-only", {"schedule": "every five minutes"})
    scheduler = IngestScheduler(database, open_adapter)
    assert scheduler.sync() == {"scheduled": "*/5 * * * *"}
    assert scheduler.run_source("scheduled") == "succeeded"
    assert count(database, "Patient") == 2
    with database.ingest_state(write=False) as state:
        assert state.runs("scheduled")[0]["trigger"] == "schedule"
    change_source(database, "scheduled", {"enabled": False})
    assert scheduler.sync() == {}
    assert scheduler.run_source("scheduled") == "skipped"


def test_adapter_errors_never_leak_the_connection(database: Database, institutions: None) -> None:
    source = register(database, "leak", "frontdb", "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=1;PWD=hunter2x;")
    with pytest.raises(ConnectionProblem) as caught:
        open_adapter(source).check()
    assert "hunter2x" not in caught.value.message
    with database.sources(write=False) as store:
        assert store.get("leak").connection.endswith("PWD=hunter2x;")  # type: ignore[union-attr]
    from sqlalchemy import text

    with database.connection(write=False) as connection:
        stored = connection.execute(text("SELECT connection FROM hub_source WHERE source_id = 'leak'")).scalar_one()
    assert "hunter2x" not in stored and stored.startswith("hub:enc:")  # encrypted at rest


def test_key_rotation_reseals_source_connections_and_quarantined_rows(database: Database, institutions: None) -> None:
    from sqlalchemy import text

    from hub.store.protection import reencrypt_secrets

    register(database, "rotated", "frontdb", f"{MARIADB}DATABASE=test;PWD=rotate-me;")
    with database.ingest_state(write=True) as state:
        state.quarantine([{"source_id": "rotated", "run_id": 1, "record_kind": "Patient", "source_key": "P1",
                           "raw": {"id_card_no": "11010519491231002X"}, "reason": "test"}], now_utc())
    rotated_keyring = database.protector.keyring.with_new_active_key()
    rotated = Database(database.settings, engine=database.engine, keyring=rotated_keyring)
    assert reencrypt_secrets(rotated) == 2
    with database.connection(write=False) as connection:
        sealed = [connection.execute(text("SELECT connection FROM hub_source WHERE source_id = 'rotated'")).scalar_one(),
                  connection.execute(text("SELECT raw FROM hub_quarantine WHERE source_key = 'P1'")).scalar_one()]
    assert all(rotated_keyring.key_id_of(token) == rotated_keyring.active for token in sealed)
    with rotated.sources(write=False) as store:
        assert store.get("rotated").connection.endswith("PWD=rotate-me;")  # type: ignore[union-attr]
    with rotated.ingest_state(write=False) as state:
        assert state.entries("rotated")[0]["raw"] == {"id_card_no": "11010519491231002X"}


def test_sources_cannot_reach_files_outside_the_operators_directories(
    database: Database, institutions: None, tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.yaml").write_text("password: hunter2x\n", encoding="utf-8")
    (elsewhere / "notes.txt").write_text("MSH|not really", encoding="utf-8")
    for profile in (str(elsewhere / "secret.yaml"), f"{tmp_path}/../{elsewhere.name}/secret.yaml", "/etc/passwd"):
        with pytest.raises(InvalidRequest, match="HUB_PROFILE_DIRS"):
            register(database, "escape", "sql-profile", "DSN=x", options={"profile": profile})
    (tmp_path / "broken.yaml").write_text("records: [unclosed\n  token: hunter2x", encoding="utf-8")
    with pytest.raises(InvalidRequest) as caught:
        register(database, "escape", "sql-profile", "DSN=x", options={"profile": str(tmp_path / "broken.yaml")})
    assert "not valid YAML (line" in caught.value.message and "hunter2x" not in caught.value.message
    source = register(database, "drop-escape", "hl7v2-drop", str(elsewhere))
    report = check_connection(source)
    assert (report.ok, report.reason) == (False, "configuration") and "HUB_DROP_DIRS" in report.message
    assert run(database, source).status == "failed"
    assert (elsewhere / "notes.txt").exists()  # nothing read or moved
