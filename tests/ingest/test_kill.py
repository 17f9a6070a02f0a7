"""A run killed with SIGKILL mid-batch, then rerun, ends with exactly the source's data (a real subprocess)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.config import Settings
from hub.fhir.repository import SearchSpec
from hub.ingest.fhir_build import resource_id
from hub.store.database import Database
from tests.ingest.conftest import count, fill_labs, lab_rows, patient_row, register, run, versions
from tests.ingest.sources import create_database, insert_rows, run_script

REPORTS = 600


def _ids(database: Database, resource_type: str) -> set[str]:
    with database.unit_of_work(write=False) as repository:
        return {s.id for s in repository.search(SearchSpec(resource_type, count=100_000))}


def test_sigkill_mid_run_then_rerun_gives_exactly_the_source(database: Database, institutions: None,
                                                              settings: Settings) -> None:
    from adapters.frontdb.schema import ddl_statements

    connection = create_database("mariadb", "hub_src_sigkill")
    run_script(connection, ddl_statements("mariadb"))
    insert_rows(connection, "hdr_patient", [patient_row(n) for n in range(1, 11)])
    fill_labs(connection, [lab_rows(n, 1 + n % 10) for n in range(1, REPORTS + 1)])
    source = register(database, "sigkill", "frontdb", connection)
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_KEY_DIR": settings.key_dir,
           "COLUMNS": "120"}
    command = [str(Path(sys.executable).with_name("hub")), "ingest", "run", "sigkill", "--page-size", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:  # kill it once some batches have committed, in the middle of the lab reports
            with database.ingest_state(write=False) as state:
                runs = state.runs("sigkill")
            if runs and runs[0]["records_read"] >= 60:
                break
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the run did not get going"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    killed = runs[0]
    assert killed["status"] == "running"
    partial = count(database, "DiagnosticReport")
    assert partial < REPORTS

    result = run(database, source)  # the lock's holder is a dead process of this host: taken over at once
    assert result.status == "succeeded", result.error
    expected_reports = {resource_id("sigkill", "LabReport", f"R{n:05d}") for n in range(1, REPORTS + 1)}
    expected_results = {resource_id("sigkill", "LabResult", f"R{n:05d}\x1fR{n:05d}-{i}")
                        for n in range(1, REPORTS + 1) for i in range(3)}
    assert _ids(database, "DiagnosticReport") == expected_reports
    assert _ids(database, "Observation") == expected_results
    assert count(database, "Patient") == 10
    # every resource has exactly one version: the rerun resumed after the last committed batch
    assert versions(database, "Observation") == len(expected_results)
    assert versions(database, "DiagnosticReport") == REPORTS
    with database.ingest_state(write=False) as state:
        at_kill = state.run(killed["run_id"])
        assert state.entries("sigkill") == []
    assert at_kill is not None and at_kill["status"] == "interrupted"
    # counts commit with their batch: the rerun read exactly what the killed run had not committed
    assert at_kill["records_read"] + result.counts.records_read == REPORTS + 10
