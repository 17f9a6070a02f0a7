"""The plans behind the search benchmark's queries (PostgreSQL): every SELECT one search runs, EXPLAINed.

A sequential scan of a large hub table is flagged: at a million resources it is the
difference between milliseconds and seconds.
"""

from __future__ import annotations

import re
import threading
import warnings
from typing import Any

from sqlalchemy import event

from hub.config import Settings
from hub.store.database import Database

#: One search the benchmark ran: its label, resource type and one sample of its parameters (None: it did not run).
Searched = tuple[str, str, list[tuple[str, str]] | None]


SEQ_SCAN = re.compile(r"Seq Scan on (hub_resource_version|hub_resource|hub_idx_\w+)\b")


def explain_plans(url: str, searches: list[Searched]) -> list[str]:
    """Print the plan of each SELECT one search runs (in-process); returns the flagged seq scans."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient on httpx: deprecated, works
        from fastapi.testclient import TestClient

    from hub.api.app import create_app

    settings = Settings(database_url=url)
    database = Database(settings)
    captured: list[tuple[str, Any]] = []
    capturing = threading.Event()

    @event.listens_for(database.engine, "before_cursor_execute")
    def _capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if capturing.is_set() and not many and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    flagged: list[str] = []
    client = TestClient(create_app(settings, database))
    try:
        for label, resource_type, sample in searches:
            print(f"\n### {label}\n")
            if not sample:
                print("(skipped: the search did not run)")
                continue
            captured.clear()
            capturing.set()
            try:
                response = client.get(f"/fhir/{resource_type}", params=sample)
            finally:
                capturing.clear()
            shown = "&".join(f"{name}={value}" for name, value in sample)
            print(f"GET /fhir/{resource_type}?{shown} -> {response.status_code}, "
                  f"{len(captured)} SELECT(s)")
            for number, (statement, parameters) in enumerate(captured, 1):
                print(f"\n-- SELECT {number}: {' '.join(statement.split())}\n-- parameters: {parameters}")
                with database.engine.connect() as conn:
                    plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement,
                                                                   parameters)]
                print("\n".join(plan))
                for table in sorted({m.group(1) for line in plan for m in SEQ_SCAN.finditer(line)}):
                    print(f"SEQ SCAN on large table: {table}")
                    flagged.append(f"{table} ({label}, SELECT {number})")
    finally:
        client.close()
        database.dispose()
    return flagged


