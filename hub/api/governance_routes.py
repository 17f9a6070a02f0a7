"""The mapping-conflict review over HTTP (data-governance staff), the mapping tables, and the review pages.

The pages ``/governance/`` (mapping conflicts) and ``/governance/match-review`` (patient matches,
API in :mod:`hub.api.empi_routes`) are static (Chinese, no CDN); they sign in with a governance
client's credentials (``session.js``) and call the JSON APIs with the bearer token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from hub.api.http import PrintableModel, printable, read_body
from hub.api.security import requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.coding.mapping_tables import decode_table, read_csv, write_csv
from hub.coding.terminology import PROCESS_CACHE
from hub.errors import HubError, InvalidRequest
from hub.governance.renormalize import estimate
from hub.governance.review import (
    Decision,
    bulk_approve,
    conflict_detail,
    decide,
    decided_view,
    follow_decision,
    names_of,
)
from hub.governance.tables import TableChange, export_table, load_table
from hub.store.conflicts import SORTS, ConflictFilter
from hub.store.database import Database

log = logging.getLogger("hub.governance")
router = APIRouter(tags=["governance"])
#: Decisions touching at most this many stored resources re-normalize them before answering; larger
#: ones answer at once and re-normalize in the background (the decision history shows the counts).
SYNC_RENORMALIZE = 5000
#: The largest list offset (the database's integers end somewhere; no queue is that long).
MAX_OFFSET = 1_000_000_000
Reviewer = Annotated[Principal, Depends(requires(Permission.REVIEW_MAPPINGS))]
ConflictId = Annotated[int, FastApiPath(ge=1, le=2**63 - 1)]
_STATIC = resources.files("hub.api") / "static"


class TargetRequest(PrintableModel):
    """The standard code a local code is mapped to."""

    system: str = Field(..., max_length=300)
    code: str = Field(..., max_length=200)
    display: str | None = Field(None, max_length=500)
    equivalence: str = Field("equivalent", max_length=20)
    target_unit: str | None = Field(None, max_length=40, description="UCUM unit to convert to, or 'canonical'")


class DecisionRequest(PrintableModel):
    """A reviewer's decision on one conflict."""

    action: str = Field(..., description="approve, reject or not-applicable")
    version: int = Field(..., ge=1, le=2**31 - 1, description="The conflict version the reviewer saw (409 if it changed)")
    reason: str = Field(..., min_length=1, max_length=1000)
    target: TargetRequest | None = Field(None, description="For approve")
    scope: str | None = Field(None, max_length=64, description="The table to write (default: the source's own)")


class BulkRequest(PrintableModel):
    """Approve the best suggestion of every open conflict the filter covers."""

    kind: str | None = None
    element: str | None = None
    source: str | None = None
    institution: str | None = None
    q: str | None = Field(None, max_length=100)
    reason: str = Field(..., min_length=1, max_length=1000)
    min_score: float = Field(0.9, ge=0.5, le=2.0)
    limit: int = Field(200, ge=1, le=1000)


def _database(request: Request) -> Database:
    return request.app.state.database  # type: ignore[no-any-return]


def _reviewer(principal: Principal) -> str:
    return f"client:{principal.client_id}"


@router.get("/governance/conflicts", summary="Mapping conflicts (filter, sort, page)")
def list_conflicts(
    request: Request, principal: Reviewer,
    kind: str | None = None, status: str | None = "open", element: str | None = None, source: str | None = None,
    institution: str | None = None, q: Annotated[str | None, Query(max_length=100)] = None,
    sort: str = "-occurrences", offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    count: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """Conflicts with occurrences, first/last seen, samples, institutions and sources."""
    for name, value in (("kind", kind), ("status", status), ("element", element), ("source", source),
                        ("institution", institution), ("q", q)):
        printable(name, value)
    if sort.lstrip("-") not in SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(SORTS)} (prefix '-' for descending)")
    selection = ConflictFilter(kind=kind or None, status=status or None, element=element or None,
                               source=source or None, institution=institution or None, text=q or None)
    database = _database(request)
    with database.conflicts(write=False) as store:
        items, total = store.list(selection, sort=sort, offset=offset, limit=count)
    return JSONResponse({"total": total, "offset": offset, "items": items, "names": names_of(database, items)})


@router.get("/governance/conflicts/{conflict_id}", summary="One conflict with ranked suggestions")
def read_conflict(request: Request, conflict_id: ConflictId, principal: Reviewer) -> JSONResponse:
    """The conflict, its suggestions, the table rows in force for its code, and its decisions; ``names``
    gives the names of its sources and institutions."""
    database = _database(request)
    conflict = conflict_detail(database, PROCESS_CACHE, conflict_id)
    return JSONResponse({**conflict, "names": names_of(database, [conflict])})


@router.post("/governance/conflicts/{conflict_id}/$decide", summary="Decide a conflict")
async def decide_conflict(request: Request, conflict_id: ConflictId, body: DecisionRequest,
                          principal: Reviewer) -> JSONResponse:
    """Approve a target, reject, or mark not-applicable; 409 when the conflict changed since ``version``.

    Approving changes the mapping table (a new version) and re-normalizes the stored resources carrying
    the code; the answer reports the counts.
    """
    decision = Decision(body.action, body.version, _reviewer(principal), body.reason.strip(),
                        body.target.model_dump(exclude_none=True) if body.target else None, body.scope)
    database = _database(request)

    def run() -> dict[str, Any]:
        changes = decide(database, PROCESS_CACHE, conflict_id, decision, follow=False)["changes"]
        codes = [code for change in changes for code in change.changed_codes]
        if estimate(database, codes) <= SYNC_RENORMALIZE:
            try:
                changes = follow_decision(database, PROCESS_CACHE, conflict_id, changes, actor=decision.reviewer,
                                          reason=decision.reason)
            except HubError as failure:  # the decision stands; the stored data can be caught up later
                log.warning("re-normalization after the decision on conflict %s failed: %s", conflict_id,
                            failure.message)
                view = decided_view(database, conflict_id, changes)
                view["renormalization"] = (f"failed ({failure.message}); the decision is saved: run "
                                           f"`hub mappings renormalize <scope>` to bring the stored data up to date")
                return view
            return decided_view(database, conflict_id, changes)
        threading.Thread(target=_follow_logged, args=(database, conflict_id, changes, decision), daemon=True,
                         name=f"renormalize-{conflict_id}").start()
        return decided_view(database, conflict_id, changes, running=True)

    return JSONResponse(await run_in_threadpool(run))


def _follow_logged(database: Database, conflict_id: int, changes: list[TableChange], decision: Decision) -> None:
    try:
        follow_decision(database, PROCESS_CACHE, conflict_id, changes, actor=decision.reviewer,
                        reason=decision.reason)
    except Exception:  # noqa: BLE001 - a background thread reports to the log; `hub mappings renormalize` redoes it
        log.exception("re-normalization after the decision on conflict %s failed", conflict_id)


@router.post("/governance/conflicts/$bulk-approve", summary="Approve the best suggestions of many conflicts")
async def bulk(request: Request, body: BulkRequest, principal: Reviewer) -> JSONResponse:
    """Approve each open unmapped or display-drift conflict the filter covers whose best suggestion scores
    at least ``min_score``; the others are listed as skipped with the reason."""
    selection = ConflictFilter(kind=body.kind, element=body.element, source=body.source,
                               institution=body.institution, text=body.q)
    database = _database(request)

    def run() -> dict[str, Any]:
        return bulk_approve(database, PROCESS_CACHE, selection, reviewer=_reviewer(principal),
                            reason=body.reason.strip(), min_score=body.min_score, limit=body.limit)

    return JSONResponse(await run_in_threadpool(run))


@router.get("/governance/mappings/{scope}", summary="A mapping table as CSV")
def get_table(request: Request, scope: str, principal: Reviewer) -> Response:
    """The scope's current table (decisions included), in the CSV columns of ``mappings/README.md``."""
    rows = export_table(_database(request), PROCESS_CACHE, scope)
    return Response(write_csv(rows, scope), media_type="text/csv; charset=utf-8")


@router.put("/governance/mappings/{scope}", summary="Load a mapping table (CSV)")
async def put_table(request: Request, scope: str, principal: Reviewer) -> JSONResponse:
    """Replace the scope's table with the CSV body: a new ConceptMap version; stored data follows."""
    raw = await read_body(request, request.app.state.settings)
    rows = read_csv(decode_table(raw), scope)
    database = _database(request)

    def run() -> dict[str, Any]:
        return load_table(database, PROCESS_CACHE, scope, rows, actor=_reviewer(principal)).as_dict()

    return JSONResponse(await run_in_threadpool(run))


#: The governance pages (Chinese, self-contained: no CDN) and their scripts, by path.
_PAGES = {"/governance/": "governance.html", "/governance": "governance.html",
          "/governance/match-review": "matches.html"}
_SCRIPTS = {"/governance/review.js": "governance.js", "/governance/matches.js": "matches.js",
            "/governance/session.js": "session.js"}


def _page(file: str) -> Callable[[], HTMLResponse]:
    def page() -> HTMLResponse:
        return HTMLResponse((_STATIC / file).read_text(encoding="utf-8"))
    return page


def _script(file: str) -> Callable[[], Response]:
    def script() -> Response:
        return Response((_STATIC / file).read_text(encoding="utf-8"), media_type="text/javascript")
    return script


for _path, _file in _PAGES.items():
    router.get(_path, include_in_schema=False)(_page(_file))
for _path, _file in _SCRIPTS.items():
    router.get(_path, include_in_schema=False)(_script(_file))
