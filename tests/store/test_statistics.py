"""SQLite keeps the planner's statistics itself: without them it picks slow plans on large tables."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from hub.config import Settings
from hub.fhir.service import FhirService
from hub.store.database import Database
from hub.store.migrate import upgrade


def test_sqlite_statistics_are_written_after_writes(tmp_path: Path) -> None:
    database = Database(Settings(database_url=f"sqlite:///{tmp_path / 'stats.db'}"))
    upgrade(database.engine)
    with database.unit_of_work(write=True) as repository:  # a write refreshes them (at most every few minutes)
        service = FhirService(repository, search_parameters=database.search_parameters)
        service.update("Patient", "st1", {"resourceType": "Patient", "id": "st1", "gender": "female"})
    with database.engine.connect() as connection:
        names = {row[0] for row in connection.execute(text("SELECT tbl FROM sqlite_stat1"))}
    assert {"hub_resource", "hub_idx_token"} <= names
    database.dispose()
