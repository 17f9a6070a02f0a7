"""Fixtures of the ingest tests: the hub's test database with an institution, real source databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.frontdb.schema import ddl_statements
from hub.fhir.repository import SearchSpec
from hub.ingest.pipeline import IngestOptions, IngestRun, RunResult
from hub.registry.sources import open_adapter, register_source
from hub.store.database import Database
from hub.store.sources import SourceRecord
from tests.conftest import INSTITUTION, OTHER_INSTITUTION  # noqa: F401 - the ingest tests import them from here
from tests.ingest.sources import create_database, insert_rows, run_script

#: GB 11643's own example numbers (valid check characters).
GOOD_ID = "11010519491231002X"
GOOD_ID_2 = "440524188001010014"
FAST = IngestOptions(page_size=3, attempts=2, backoff_seconds=0.01, sleep=lambda _s: None, validate_every=1)


@pytest.fixture(autouse=True)
def operator_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's temporary directory is a profile and drop directory the operator opened."""
    monkeypatch.setenv("HUB_PROFILE_DIRS", str(tmp_path))
    monkeypatch.setenv("HUB_DROP_DIRS", str(tmp_path))


@pytest.fixture(params=["mariadb", "postgresql"])
def frontdb(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """An empty front-end database with the published tables, on MariaDB and on PostgreSQL: (server, ODBC)."""
    server = request.param
    connection = create_database(server, f"hub_src_frontdb_{server}")
    run_script(connection, ddl_statements(server))
    yield server, connection


def register(database: Database, source_id: str, adapter: str, connection: str, *,
             institution: str = INSTITUTION, **extra: Any) -> SourceRecord:
    """Register a source of ``institution``."""
    return register_source(database, {"source_id": source_id, "institution": institution, "system_kind": "HIS",
                                      "adapter": adapter, "connection": connection, **extra})


def run(database: Database, source: SourceRecord, options: IngestOptions = FAST, trigger: str = "manual") -> RunResult:
    """One ingest run of ``source``."""
    return IngestRun(database, source, open_adapter, options=options).run(trigger)


def count(database: Database, resource_type: str) -> int:
    """How many current resources of a type the store holds."""
    with database.unit_of_work(write=False) as repository:
        return repository.count(SearchSpec(resource_type))


def versions(database: Database, resource_type: str) -> int:
    """How many versions of a type the store holds (to prove that reruns add none)."""
    from sqlalchemy import func, select

    from hub.store.tables import resource_version

    with database.connection(write=False) as connection:
        return int(connection.execute(
            select(func.count()).select_from(resource_version).where(resource_version.c.resource_type == resource_type)
        ).scalar_one())


def patient_row(number: int, **changes: Any) -> dict[str, Any]:
    """A front-end database patient row."""
    row = {"patient_id": f"P{number:04d}", "name": f"患者{number}", "sex_code": "1" if number % 2 else "2",
           "birth_date": "1949-12-31", "id_card_no": GOOD_ID if number % 2 else GOOD_ID_2,
           "phone": f"1380013{number:04d}", "marital_status_code": "20", "nation_code": "01", "address": "昆山市玉山镇",
           "record_no": f"BA{number:04d}", "update_time": f"2025-01-01 08:{number // 60:02d}:{number % 60:02d}"}
    row.update(changes)
    return row


def lab_rows(report: int, patient: int, results: int = 3, **changes: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A lab report row and its result rows."""
    report_id = f"R{report:05d}"
    head = {"report_id": report_id, "patient_id": f"P{patient:04d}", "visit_id": None, "report_code": "CBC",
            "report_name": "血常规", "specimen_name": "静脉血", "collect_time": "2025-01-02 08:00:00",
            "report_time": "2025-01-02 10:00:00", "report_status": "final", "perform_org_code": None,
            "update_time": f"2025-01-02 10:{report // 60:02d}:{report % 60:02d}"}
    head.update(changes)
    items = [("WBC", "白细胞计数", "6.5", "10*9/L", "3.5-9.5", "N"), ("HGB", "血红蛋白", "180", "g/L", "130-175", "H"),
             ("PLT", "血小板计数", "<5", "10*9/L", "125-350", "L"), ("UA", "尿酸定性", "阴性", None, None, None)]
    rows = [{"result_id": f"{report_id}-{n}", "report_id": report_id, "item_code": code, "item_name": name,
             "result_value": value, "unit": unit, "ref_range": ref, "abnormal_flag": flag}
            for n, (code, name, value, unit, ref, flag) in enumerate(items[:results])]
    return head, rows


def fill_labs(connection: str, reports: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
    """Insert lab reports with their results."""
    insert_rows(connection, "hdr_lab_report", [head for head, _rows in reports])
    insert_rows(connection, "hdr_lab_result", [row for _head, rows in reports for row in rows])
