"""Source systems, ingest runs and quarantine over HTTP (hospital IT; admins see every institution).

A ``source-admin`` client manages only the sources of its own institutions; the connection
is never returned (its password is masked) and runs are started in the background.
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse
from pydantic import Field

from hub.api.http import PrintableModel
from hub.api.security import fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission, Role
from hub.errors import Forbidden, NotFound
from hub.fhir.instants import now_utc
from hub.ingest.pipeline import IngestRun
from hub.registry.sources import (
    change_source,
    check_connection,
    get_source,
    open_adapter,
    register_source,
    source_summary,
)
from hub.store.database import Database
from hub.store.sources import SourceRecord

router = APIRouter(tags=["sources"])
Manager = Annotated[Principal, Depends(requires(Permission.MANAGE_SOURCES))]
#: Run and quarantine ids are 64-bit keys.
MAX_KEY = 2**63 - 1


class SourceRequest(PrintableModel):
    """A source system as registered (on update, fields left out keep their values)."""

    source_id: str | None = Field(None, description="Lower-case letters, digits and '-'")
    institution: str | None = Field(None, description="Organization id of the institution running the system")
    name: str | None = None
    system_kind: str | None = Field(None, description="HIS, EMR, LIS, PACS, RIS, ECG or EHR")
    adapter: str | None = Field(None, description="frontdb, his-pinyin, lis-english, sql-profile, hl7v2-drop")
    adapter_version: str | None = None
    connection: str | None = Field(None, description="ODBC connection string or DSN, SQLAlchemy URL or directory "
                                                     "(stored encrypted, never returned)")
    options: dict[str, Any] | None = None
    schedule: str | None = Field(None, description="Cron expression (minute hour day month weekday)")
    enabled: bool | None = None


def _database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def _institutions(principal: Principal, database: Database) -> frozenset[str] | None:
    """The institutions whose sources ``principal`` manages (None: all)."""
    access = fhir_access(principal, database)
    return None if access.institutions is None else access.writable


def _guard(principal: Principal, database: Database, institution: str) -> None:
    allowed = _institutions(principal, database)
    if allowed is not None and institution not in allowed:
        raise Forbidden(f"This client manages the sources of {', '.join(sorted(allowed)) or 'no institution'} only")


#: Connections that open a file on the hub server (the SQLite ODBC driver, a SQLite URL).
_LOCAL_FILE = re.compile(r"(?i)(driver\s*=\s*\{?\s*sqlite|^\s*sqlite)")


def _guard_connection(principal: Principal, data: dict[str, Any]) -> None:
    """Only an admin may register a source that opens a file of the hub server."""
    if principal.role is not Role.ADMIN and _LOCAL_FILE.search(str(data.get("connection", ""))):
        raise Forbidden("Only an admin may register a source that opens a file on the hub server (SQLite)")


def _source(request: Request, principal: Principal, source_id: str) -> SourceRecord:
    database = _database(request)
    source = get_source(database, source_id)
    allowed = _institutions(principal, database)
    if allowed is not None and source.institution not in allowed:
        raise NotFound(f"No source {source_id[:64]}")  # another institution's sources are not disclosed
    return source


@router.get("/admin/sources", summary="List source systems")
def list_sources(request: Request, principal: Manager) -> JSONResponse:
    """The sources this client manages (connections with passwords masked)."""
    database = _database(request)
    with database.sources(write=False) as store:
        sources = store.all(_institutions(principal, database))
    return JSONResponse([source_summary(s) for s in sources])


@router.post("/admin/sources", summary="Register a source system", status_code=201)
def create_source(request: Request, body: SourceRequest, principal: Manager) -> JSONResponse:
    """Register a source of one of the client's institutions."""
    database = _database(request)
    data = body.model_dump(exclude_none=True)
    _guard(principal, database, str(data.get("institution", "")))
    _guard_connection(principal, data)
    source = register_source(database, data)
    return JSONResponse(source_summary(source), status_code=201,
                        headers={"Location": f"/admin/sources/{source.source_id}"})


@router.get("/admin/sources/{source_id}", summary="Read a source system")
def read_source(request: Request, source_id: str, principal: Manager) -> JSONResponse:
    """One source (connection password masked)."""
    return JSONResponse(source_summary(_source(request, principal, source_id)))


@router.put("/admin/sources/{source_id}", summary="Change a source system")
def update_source(request: Request, source_id: str, body: SourceRequest, principal: Manager) -> JSONResponse:
    """Change a source; fields left out (the connection too) keep their values."""
    existing = _source(request, principal, source_id)
    data = body.model_dump(exclude_none=True)
    _guard(principal, _database(request), str(data.get("institution", existing.institution)))
    _guard_connection(principal, data)
    return JSONResponse(source_summary(change_source(_database(request), source_id, data)))


@router.delete("/admin/sources/{source_id}", summary="Unregister a source system")
def delete_source(request: Request, source_id: str, principal: Manager) -> JSONResponse:
    """Unregister a source (the data it brought in, its runs and quarantine stay)."""
    _source(request, principal, source_id)
    with _database(request).sources(write=True) as store:
        store.remove(source_id)
    return JSONResponse({"source_id": source_id, "removed": True})


@router.post("/admin/sources/{source_id}/$test-connection", summary="Test a source's connection")
def source_test_connection(request: Request, source_id: str, principal: Manager) -> JSONResponse:
    """Connect and check the profile's tables and columns; the reason is secret-free."""
    report = check_connection(_source(request, principal, source_id))
    return JSONResponse(report.as_dict())


@router.post("/admin/sources/{source_id}/$ingest", summary="Start an ingest run now", status_code=202)
def start_run(request: Request, source_id: str, principal: Manager) -> JSONResponse:
    """Start a run in the background: 202 with the run's address; 409 if the source is already running."""
    source = _source(request, principal, source_id)
    runner = IngestRun(_database(request), source, open_adapter)
    run_id = runner.begin("api")
    threading.Thread(target=runner.execute, name=f"ingest-{source_id}", daemon=True).start()
    return JSONResponse({"run_id": run_id, "status": "running"}, status_code=202,
                        headers={"Location": f"/admin/runs/{run_id}"})


def _run_json(run: dict[str, Any]) -> dict[str, Any]:
    finished, started = run.get("finished"), run.get("started")
    seconds = (finished - started).total_seconds() if finished and started else None
    return {**{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in run.items()}, "seconds": seconds}


@router.get("/admin/sources/{source_id}/runs", summary="Runs of a source")
def source_runs(request: Request, source_id: str, principal: Manager,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    """Runs newest first, with counts, duration, status and error."""
    _source(request, principal, source_id)
    with _database(request).ingest_state(write=False) as state:
        return JSONResponse([_run_json(r) for r in state.runs(source_id, limit)])


@router.get("/admin/runs/{run_id}", summary="One ingest run")
def read_run(request: Request, run_id: Annotated[int, FastApiPath(ge=1, le=MAX_KEY)], principal: Manager) -> JSONResponse:
    """A run's state and counts (poll it after ``$ingest``)."""
    with _database(request).ingest_state(write=False) as state:
        run = state.run(run_id)
    if run is None:
        raise NotFound(f"No run {run_id}")
    _source(request, principal, run["source_id"])
    return JSONResponse(_run_json(run))


@router.get("/admin/sources/{source_id}/quarantine", summary="Quarantined rows of a source")
def source_quarantine(request: Request, source_id: str, principal: Manager,
                      status: Annotated[str, Query(pattern="^(open|resolved|superseded|discarded)$")] = "open",
                      after: Annotated[int, Query(ge=0, le=MAX_KEY)] = 0,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> JSONResponse:
    """Rows that could not be stored, with the reason (raw rows hold personal data: they are not returned)."""
    _source(request, principal, source_id)
    with _database(request).ingest_state(write=False) as state:
        entries = state.entries(source_id, status=status, after=after, limit=limit)
    return JSONResponse([
        {"id": e["q_id"], "run_id": e["run_id"], "record_kind": e["record_kind"], "source_key": e["source_key"],
         "reason": e["reason"], "status": e["status"], "created": _run_json(e)["created"],
         "fields": sorted(e["raw"])} for e in entries
    ])


@router.post("/admin/sources/{source_id}/quarantine/$replay", summary="Replay quarantined rows")
def replay_quarantine(request: Request, source_id: str, principal: Manager) -> JSONResponse:
    """Convert every open quarantined row again (after a fix); the run's counts say what landed."""
    source = _source(request, principal, source_id)
    result = IngestRun(_database(request), source, open_adapter).replay_open()
    return JSONResponse({"run_id": result.run_id, "status": result.status, "replayed": result.counts.records_read,
                         **result.counts.as_dict(), "error": result.error})


@router.post("/admin/sources/{source_id}/quarantine/{entry_id}/$discard", summary="Discard a quarantined row")
def discard_quarantined(request: Request, source_id: str, entry_id: Annotated[int, FastApiPath(ge=1, le=MAX_KEY)],
                        principal: Manager) -> JSONResponse:
    """Drop a quarantined row on purpose (it stays in the table as ``discarded``); 404 if not open."""
    _source(request, principal, source_id)
    with _database(request).ingest_state(write=True) as state:
        if not any(e["q_id"] == entry_id for e in state.entries(source_id, after=entry_id - 1, limit=1)):
            raise NotFound(f"No open quarantine entry {entry_id} of {source_id[:64]}")
        state.discard([entry_id], now_utc())
    return JSONResponse({"id": entry_id, "status": "discarded"})
