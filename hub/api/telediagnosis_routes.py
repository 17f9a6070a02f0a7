"""远程诊断 (分布式检查、集中式诊断) over HTTP: configuration, readers, intake, worklists, claims, reports,
the SLA sweep and the figures. The Tasks themselves are also FHIR (``GET /fhir/Task?owner=…&status=…``).

- ``/telediagnosis/config`` (GET; PUT YAML or JSON), ``PUT /telediagnosis/readers``, ``POST /telediagnosis/sweep``
  (permission ``manage-telediagnosis``)
- ``POST /telediagnosis/tasks``: a site sends an exam to be read now (``request-reading``; the intake also
  takes exams in by itself as their ImagingStudy or ServiceRequest is written)
- ``GET /telediagnosis/worklist``, ``GET /telediagnosis/readers``, ``POST /telediagnosis/readers/{id}/shift``,
  ``POST /telediagnosis/tasks/{id}/claim|release|report`` (``read-worklists``)
- ``POST /telediagnosis/route``: where an exam would go now, and why (``manage-telediagnosis`` or
  ``read-worklists``)
- ``GET /telediagnosis/figures`` (``read-indicators``)
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from hub.api.http import JSON_TYPES, PrintableModel, printable, read_body
from hub.api.security import Authenticated, fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.errors import Forbidden, InvalidRequest
from hub.telediagnosis.figures import figures as tele_figures
from hub.telediagnosis.figures import local_days
from hub.telediagnosis.service import Telediagnosis
from hub.telediagnosis.sla import sweep

router = APIRouter(tags=["telediagnosis"])
Manager = Annotated[Principal, Depends(requires(Permission.MANAGE_TELEDIAGNOSIS))]
ReaderClient = Annotated[Principal, Depends(requires(Permission.READ_WORKLISTS))]
Site = Annotated[Principal, Depends(requires(Permission.REQUEST_READING))]
Viewer = Annotated[Principal, Depends(requires(Permission.READ_INDICATORS))]
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", *JSON_TYPES)
TaskId = Annotated[str, FastApiPath(max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


def _tele(request: Request) -> Telediagnosis:
    return request.app.state.telediagnosis  # type: ignore[no-any-return]


def _institutions(principal: Principal) -> frozenset[str] | None:
    """The institutions a bound client acts for (None: any)."""
    return principal.institutions if principal.bound else None


def _audit(request: Request, rows: list[dict[str, Any]]) -> None:
    """The patients whose exams the answer named, for the audit trail."""
    request.state.audit_patients = sorted({r["patient"].split("/", 1)[1] for r in rows if r.get("patient")})


async def _yaml_body(request: Request) -> bytes:
    body = await read_body(request, request.app.state.settings)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media and media not in _YAML_TYPES:
        raise InvalidRequest(f"Send YAML or JSON, not {media}")
    return body


# -- configuration and readers ----------------------------------------------------------------

@router.get("/telediagnosis/config", summary="The tele-diagnosis configuration in force")
def read_config(request: Request, principal: Authenticated) -> JSONResponse:
    """Reading centers, sites, subspecialty rules, SLA targets, warning share and claim timeout."""
    return JSONResponse(_tele(request).config())


@router.put("/telediagnosis/config", summary="Put a tele-diagnosis configuration in force (YAML or JSON)")
async def put_config(request: Request, principal: Manager) -> JSONResponse:
    """Every problem is reported at once (400) and nothing changes; earlier versions are kept."""
    body = await _yaml_body(request)
    return JSONResponse(await run_in_threadpool(_tele(request).load_config, body, f"client:{principal.client_id}"))


@router.get("/telediagnosis/config/history", summary="Every tele-diagnosis configuration loaded")
def config_history(request: Request, principal: Authenticated) -> JSONResponse:
    """Versions, newest first."""
    return JSONResponse({"versions": _tele(request).config_history()})


@router.put("/telediagnosis/readers", summary="Write the reader roster (Practitioner + PractitionerRole each)")
async def put_readers(request: Request, principal: Manager) -> JSONResponse:
    """``readers: [{id, name, center, modalities, subspecialties, capacity, supervisor, on_shift}]``."""
    body = await _yaml_body(request)
    return JSONResponse(await run_in_threadpool(_tele(request).load_readers, body))


@router.get("/telediagnosis/readers", summary="Readers with qualification, shift and load")
def list_readers(request: Request, principal: ReaderClient) -> JSONResponse:
    """A bound client sees the readers of its own institutions."""
    return JSONResponse({"readers": _tele(request).readers(_institutions(principal))})


class ShiftBody(PrintableModel):
    """Start or end a shift."""

    on_shift: bool


@router.post("/telediagnosis/readers/{role_id}/shift", summary="Start or end a reader's shift")
async def shift(request: Request, role_id: TaskId, body: ShiftBody, principal: ReaderClient) -> JSONResponse:
    """Ending it routes the reader's unclaimed tasks again; starting it gives them queued tasks."""
    return JSONResponse(await run_in_threadpool(_tele(request).set_shift, role_id, body.on_shift,
                                                _institutions(principal)))


# -- intake, worklists, claims, reports -------------------------------------------------------

class ReadingBody(PrintableModel):
    """An exam to be read."""

    focus: str = Field(..., max_length=200, description="ImagingStudy/<id> (done at the site) or "
                       "ServiceRequest/<id> (an order whose performer is a reading center)")


@router.post("/telediagnosis/tasks", summary="Send an exam to be read now")
async def request_reading(request: Request, body: ReadingBody, principal: Site) -> JSONResponse:
    """The reading Task, created and routed (201), or the one that already reads it (200)."""
    tele = _tele(request)
    found = await run_in_threadpool(tele.request_reading, body.focus, fhir_access(principal, tele.database))
    _audit(request, [found])
    return JSONResponse(found, status_code=201 if found["outcome"] == "created" else 200)


@router.get("/telediagnosis/worklist", summary="A reader's or a center's worklist")
def worklist(request: Request, principal: ReaderClient, reader: Annotated[str | None, Query(max_length=100)] = None,
             center: Annotated[str | None, Query(max_length=64)] = None,
             count: Annotated[int, Query(ge=1, le=1000)] = 200) -> JSONResponse:
    """Open tasks by priority (stat, asap, urgent, routine) then deadline: the reader's own, their center's
    queue and, for a supervisor, the center's escalated tasks; or a whole center's (``center``)."""
    printable("reader", reader), printable("center", center)
    if (reader is None) == (center is None):
        raise InvalidRequest("Name either reader (PractitionerRole/<id>) or center")
    rows = _tele(request).worklist(reader=reader, center=center, institutions=_institutions(principal), limit=count)
    _audit(request, rows)
    return JSONResponse({"tasks": rows})


class ReaderBody(PrintableModel):
    """Who acts."""

    reader: str = Field(..., max_length=100, description="The reader's PractitionerRole/<id>")
    reason: str | None = Field(None, max_length=500, description="For release: why")


class ReportBody(PrintableModel):
    """The reader's report."""

    reader: str = Field(..., max_length=100, description="The reader's PractitionerRole/<id>")
    report: dict[str, Any] = Field(..., description="A DiagnosticReport (status final; code, conclusion…): the "
                                   "hub links it to the patient, exam, order, reader and center")


@router.post("/telediagnosis/tasks/{task_id}/claim", summary="Claim a task (one reader wins; the others get 409)")
async def claim(request: Request, task_id: TaskId, body: ReaderBody, principal: ReaderClient) -> JSONResponse:
    """The task, claimed; a claim not reported within the claim timeout returns it to the queue."""
    row = await run_in_threadpool(_tele(request).claim, task_id, body.reader, _institutions(principal))
    _audit(request, [row])
    return JSONResponse(row)


@router.post("/telediagnosis/tasks/{task_id}/release", summary="Give a task back to routing")
async def release(request: Request, task_id: TaskId, body: ReaderBody, principal: ReaderClient) -> JSONResponse:
    """It goes to another eligible reader, or to the center's queue."""
    row = await run_in_threadpool(_tele(request).release, task_id, body.reader, body.reason or "",
                                  _institutions(principal))
    _audit(request, [row])
    return JSONResponse(row)


@router.post("/telediagnosis/tasks/{task_id}/report", summary="Submit the report: the task is completed")
async def report(request: Request, task_id: TaskId, body: ReportBody, principal: ReaderClient) -> JSONResponse:
    """The DiagnosticReport is stored for the site and the center; the Task is completed with it as output."""
    row = await run_in_threadpool(_tele(request).report, task_id, body.reader, body.report, _institutions(principal))
    _audit(request, [row])
    return JSONResponse(row, status_code=201)


class RouteBody(PrintableModel):
    """An exam to route (nothing is written)."""

    site: str = Field(..., max_length=64)
    modality: str = Field(..., max_length=16)
    priority: str = Field("routine", max_length=16)
    body_site: str | None = Field(None, max_length=64)


@router.post("/telediagnosis/route", summary="Where an exam would go now, and why")
async def route_preview(request: Request, body: RouteBody, principal: Authenticated) -> JSONResponse:
    """The center, the reader (or the queue), and every reader considered with the reason they were not chosen."""
    if not (principal.can(Permission.MANAGE_TELEDIAGNOSIS) or principal.can(Permission.READ_WORKLISTS)):
        raise Forbidden("Routing previews need the permission manage-telediagnosis or read-worklists")
    decision = await run_in_threadpool(_tele(request).route_preview, body.site, body.modality, body.priority,
                                       body.body_site)
    return JSONResponse(decision.as_dict())


@router.post("/telediagnosis/sweep", summary="Run the SLA sweep now")
async def run_sweep(request: Request, principal: Manager) -> JSONResponse:
    """Expired claims back to the queue, 50 % reassignments and reminders, 100 % escalations (it also runs
    every HUB_TELE_SWEEP_SECONDS in the background)."""
    return JSONResponse((await run_in_threadpool(sweep, _tele(request))).as_dict())


@router.get("/telediagnosis/figures", summary="Volume, TAT p50/p90, SLA compliance and backlog")
def figures(request: Request, principal: Viewer, first: Annotated[date, Query(alias="from")],
            last: Annotated[date, Query(alias="to")], by: str = "center") -> JSONResponse:
    """Tasks created from ``from`` to ``to`` (local days, both included) grouped by site, center or modality;
    the backlog is now's. A bound client sees tasks whose site or center it reads."""
    printable("by", by)
    start, end = local_days(first, last)
    tele = _tele(request)
    reach = fhir_access(principal, tele.database).institutions
    return JSONResponse(tele_figures(tele.database, start, end, by, tele.clock(), reach))
