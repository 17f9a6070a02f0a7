"""Dashboards 一屏看全区 over HTTP (permission ``read-indicators``; a bound client sees its own institutions only).

- ``GET|POST /fhir/Measure/$evaluate-measure?measure=…`` and ``/fhir/Measure/{id}/$evaluate-measure``: R4
  ``$evaluate-measure`` (``periodStart``, ``periodEnd``, ``subject`` or ``organization`` = an Organization of the
  roster, ``reportType`` summary) → a summary ``MeasureReport`` with strata per institution;
- ``GET /dashboards/indicators``: the same figures as compact JSON for the page (``period`` 2026, 2026-Q1,
  2026-03, or ``from``/``to``; ``unit``; ``measure``, repeatable);
- ``GET /dashboards/units``: the units (region, consortium, zone, institution) the caller may choose;
- ``GET /dashboards``: the page (Chinese, ECharts shipped with the hub, no CDN).

Registered before the generic FHIR routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from hub.api.fhir_routes import Body, Context
from hub.api.http import JSON_TYPES, parse_body
from hub.api.security import fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.dashboards.definitions import MeasureDef, measures
from hub.dashboards.report import compact, measure_report, parse_period
from hub.dashboards.service import Dashboards
from hub.errors import InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.parameters import OperationInput
from hub.fhir.response import Rendered
from hub.fhir.search import has_control_characters

fhir_router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
router = APIRouter(tags=["Dashboards"])
Viewer = Annotated[Principal, Depends(requires(Permission.READ_INDICATORS))]
_STATIC = resources.files("hub.api") / "static"
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _dashboards(request: Request) -> Dashboards:
    return request.app.state.dashboards  # type: ignore[no-any-return]


def _reach(principal: Principal, dashboards: Dashboards) -> frozenset[str] | None:
    """The institutions a bound client reads (its consortia resolved to theirs); None: every one."""
    return fhir_access(principal, dashboards.database).institutions


def _day(name: str, text: str | None, *, end: bool) -> date:
    """A FHIR date (2026, 2026-03 or 2026-03-31) as its first day, or its last one for the period's end."""
    if not text:
        raise InvalidRequest(f"$evaluate-measure needs the parameter '{name}' (a date: 2026-01-01)")
    match = _DATE.match(text.strip())
    if match is None:
        raise InvalidRequest(f"Parameter '{name}' must be a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    year, month, day = match.groups()
    try:
        if day:
            return date(int(year), int(month), int(day))
        if month:
            first, last = parse_period(f"{year}-{month}")
        else:
            first, last = parse_period(year)
    except ValueError:
        raise InvalidRequest(f"Parameter '{name}' is not a calendar date") from None
    return last if end else first


def _unit(inp: OperationInput) -> str | None:
    subject, organization = inp.text("subject"), inp.text("organization")
    if subject and organization:
        raise InvalidRequest("Give either 'subject' or 'organization', not both")
    chosen = subject or organization
    if not chosen:
        return None
    if has_control_characters(chosen) or len(chosen) > 100:
        raise InvalidRequest("'subject' must be an Organization reference (Organization/<id>)")
    if chosen.startswith("Organization/"):
        chosen = chosen[len("Organization/"):]
        if not chosen:
            raise InvalidRequest("'subject' names no Organization (Organization/<id>)")
        return chosen
    if "/" in chosen:
        raise InvalidRequest("Only Organization subjects are evaluated (a summary report per region, consortium, "
                             "zone or institution); Patient and Group subjects are not supported")
    return chosen


def _evaluate(request: Request, ctx: Context, definition: MeasureDef | None, inp: OperationInput) -> Response:
    ctx.principal.require(Permission.READ_INDICATORS)
    dashboards = _dashboards(request)
    if definition is None:
        url = inp.text("measure")
        if not url:
            raise InvalidRequest("Measure/$evaluate-measure needs the parameter 'measure' (a Measure's canonical URL)")
        definition = dashboards.measure_by_url(url)
    report_type = inp.text("reportType") or "summary"
    if report_type != "summary":
        raise InvalidRequest(f"reportType {report_type!r} is not supported: the indicators are summary reports")
    first = _day("periodStart", inp.text("periodStart"), end=False)
    last = _day("periodEnd", inp.text("periodEnd"), end=True)
    evaluation = dashboards.evaluate(definition.measure_id, first, last, _unit(inp), _reach(ctx.principal, dashboards))
    return ctx.send(Rendered(200, jsonio.dumps(measure_report(evaluation, dashboards.clock()))))


def _input(request: Request, body: bytes | None) -> OperationInput:
    if body:
        return OperationInput.from_body(parse_body(body, request.headers.get("content-type"), JSON_TYPES),
                                        request.query_params.multi_items())
    return OperationInput.from_query(request.query_params.multi_items())


@fhir_router.get("/Measure/$evaluate-measure", summary="Measure $evaluate-measure (the measure by canonical URL)")
def evaluate_any_get(request: Request, ctx: Context) -> Response:
    """``measure`` (canonical URL), ``periodStart``, ``periodEnd``, ``subject``/``organization``: a MeasureReport."""
    return _evaluate(request, ctx, None, _input(request, None))


@fhir_router.post("/Measure/$evaluate-measure", summary="Measure $evaluate-measure (Parameters body)")
def evaluate_any_post(request: Request, ctx: Context, body: Body) -> Response:
    """The same, the inputs in a ``Parameters`` body."""
    return _evaluate(request, ctx, None, _input(request, body))


@fhir_router.get("/Measure/{measure_id}/$evaluate-measure", summary="Measure $evaluate-measure of one indicator")
def evaluate_get(request: Request, ctx: Context, measure_id: str) -> Response:
    """``periodStart``, ``periodEnd``, ``subject``/``organization``: the indicator's summary MeasureReport."""
    return _evaluate(request, ctx, Dashboards.measure(measure_id), _input(request, None))


@fhir_router.post("/Measure/{measure_id}/$evaluate-measure", summary="Measure $evaluate-measure (Parameters body)")
def evaluate_post(request: Request, ctx: Context, body: Body, measure_id: str) -> Response:
    """The same, the inputs in a ``Parameters`` body."""
    return _evaluate(request, ctx, Dashboards.measure(measure_id), _input(request, body))


def _period(period: str | None, first: date | None, last: date | None) -> tuple[date, date]:
    if period and (first or last):
        raise InvalidRequest("Give either 'period' or 'from' and 'to', not both")
    if period:
        return parse_period(period)
    if first is None or last is None:
        raise InvalidRequest("Give 'period' (2026, 2026-Q1 or 2026-03) or both 'from' and 'to'")
    return first, last


@router.get("/dashboards/indicators", summary="The indicators for one unit and period (the page's figures)")
async def indicators(request: Request, principal: Viewer, period: str | None = None,
                     first: Annotated[date | None, Query(alias="from")] = None,
                     last: Annotated[date | None, Query(alias="to")] = None,
                     unit: Annotated[str | None, Query(max_length=64)] = None,
                     measure: Annotated[list[str] | None, Query()] = None) -> JSONResponse:
    """Each indicator's figures for ``unit`` (default: all the caller reaches), its children and breakdowns."""
    for value in (period or "", unit or "", *(measure or ())):
        if has_control_characters(value):
            raise InvalidRequest("Parameters must not hold control characters")
    start, end = _period(period, first, last)
    chosen = [Dashboards.measure(m).measure_id for m in measure] if measure else list(measures())
    dashboards = _dashboards(request)

    def run() -> dict:
        evaluations = dashboards.evaluate_many(chosen, start, end, unit or None, _reach(principal, dashboards))
        top = evaluations[0].unit
        return {"period": {"from": start.isoformat(), "to": end.isoformat()},
                "unit": {"id": top.key, "name": top.name, "kind": top.kind},
                "indicators": [compact(e) for e in evaluations]}

    return JSONResponse(await run_in_threadpool(run))


@router.get("/dashboards/units", summary="The units (region, consortium, zone, institution) the caller may see")
def dashboard_units(request: Request, principal: Viewer) -> JSONResponse:
    """Each unit with its parent (the page's filters)."""
    dashboards = _dashboards(request)
    return JSONResponse({"units": dashboards.units(_reach(principal, dashboards))})


_FILES = {"/dashboards/dashboards.js": ("dashboards.js", "text/javascript"),
          "/dashboards/session.js": ("session.js", "text/javascript"),
          "/dashboards/echarts.min.js": ("vendor/echarts.min.js", "text/javascript"),
          "/dashboards/dashboards.css": ("dashboards.css", "text/css")}


def _file(name: str, media_type: str) -> Callable[[], Response]:
    def serve() -> Response:
        path = _STATIC / name
        if not path.is_file():  # the vendored libraries come from `make assets`
            raise NotFound(f"{name} is not built: run 'make assets' where the hub is installed")
        return Response(path.read_bytes(), media_type=media_type, headers={"Cache-Control": "no-cache"})
    return serve


@router.get("/dashboards", include_in_schema=False)
def page() -> HTMLResponse:
    """The dashboard page."""
    return HTMLResponse((_STATIC / "dashboards.html").read_text(encoding="utf-8"))


for _path, (_name, _type) in _FILES.items():
    router.get(_path, include_in_schema=False)(_file(_name, _type))
