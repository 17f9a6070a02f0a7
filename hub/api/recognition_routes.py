"""检查检验结果互认 over HTTP: the catalogue and quality-control records, checks, decisions, figures,
and the CDS Hooks services ordering systems call at order time.

- ``/recognition/catalogue`` (GET; PUT YAML or JSON: permission ``manage-recognition``)
- ``/recognition/eqa`` (GET, POST; DELETE ``/recognition/eqa/{id}``: ``manage-recognition``)
- ``POST /recognition/check`` and ``POST /recognition/checks/{id}/decision`` (``check-recognition``)
- ``GET /recognition/figures`` (``read-indicators``)
- ``GET /cds-services``, ``POST /cds-services/{id}``, ``POST /cds-services/{id}/feedback``
  (``check-recognition``)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from hub.api.http import JSON_TYPES, PrintableModel, parse_body, read_body
from hub.api.security import Authenticated, fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.errors import Forbidden, InvalidRequest
from hub.fhir.instants import aware
from hub.recognition import cds
from hub.recognition.check import CheckRequest, CheckResult
from hub.recognition.service import Recognition

router = APIRouter(tags=["recognition"])
Manager = Annotated[Principal, Depends(requires(Permission.MANAGE_RECOGNITION))]
Checker = Annotated[Principal, Depends(requires(Permission.CHECK_RECOGNITION))]
Viewer = Annotated[Principal, Depends(requires(Permission.READ_INDICATORS))]
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", *JSON_TYPES)


def _recognition(request: Request) -> Recognition:
    return request.app.state.recognition  # type: ignore[no-any-return]


def _actor(principal: Principal) -> str:
    return f"client:{principal.client_id}"


def _institutions(principal: Principal) -> frozenset[str] | None:
    """The institutions a bound client acts for (None: any)."""
    return principal.institutions if principal.bound else None


def _ordering(principal: Principal, institution: str | None) -> str:
    """The ordering institution of a check: the client's own, or (unbound clients) the one named."""
    acts_for = _institutions(principal)
    if acts_for is not None:
        if institution is None and len(acts_for) == 1:
            return next(iter(acts_for))
        if institution not in acts_for:
            raise Forbidden("This client orders for its own institution(s) only: "
                            + ", ".join(sorted(acts_for)))
        return institution
    if not institution:
        raise InvalidRequest("institution (the ordering institution's Organization id) is required")
    return institution


# -- catalogue and quality control ------------------------------------------------------------

@router.get("/recognition/catalogue", summary="The recognition catalogue in force (互认项目目录)")
def read_catalogue(request: Request, principal: Authenticated) -> JSONResponse:
    """Items with code, validity, scope, qualification rule and price; when and by whom it was loaded."""
    return JSONResponse(_recognition(request).catalogue())


@router.put("/recognition/catalogue", summary="Put a recognition catalogue in force (YAML or JSON)")
async def put_catalogue(request: Request, principal: Manager) -> JSONResponse:
    """Every problem is reported at once (400) and nothing changes; otherwise the catalogue is the next
    version and the stored results of items whose code or qualification changed are re-marked."""
    body = await read_body(request, request.app.state.settings)
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media and media not in _YAML_TYPES:
        raise InvalidRequest(f"Send the catalogue as YAML or JSON, not {media}")
    return JSONResponse(await run_in_threadpool(_recognition(request).load_catalogue, body, _actor(principal)))


@router.get("/recognition/eqa", summary="Quality-control (室间质评) records")
def list_eqa(request: Request, principal: Authenticated, institution: str | None = None,
             item: str | None = None, year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> JSONResponse:
    """Records filtered by institution, item and year."""
    return JSONResponse({"records": _recognition(request).eqa_records(institution=institution, item_id=item,
                                                                      year=year)})


@router.post("/recognition/eqa", summary="Record quality-control results")
async def post_eqa(request: Request, principal: Manager) -> JSONResponse:
    """``{"records": [{institution, item, year, passed, scheme?, certificate?}]}``; a result already recorded
    for the institution, item and year is replaced. The results they decide are re-marked HR (or not)."""
    body = parse_body(await read_body(request, request.app.state.settings), request.headers.get("content-type"),
                      JSON_TYPES)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not records or len(records) > 10_000:
        raise InvalidRequest("Send {\"records\": [...]} with 1 to 10,000 records")
    return JSONResponse(await run_in_threadpool(_recognition(request).save_eqa, records, _actor(principal)))


@router.delete("/recognition/eqa/{eqa_id}", summary="Remove a quality-control record")
async def delete_eqa(request: Request, eqa_id: Annotated[int, FastApiPath(ge=1, le=2**63 - 1)],
                     principal: Manager) -> JSONResponse:
    """The results it decided are re-marked."""
    return JSONResponse(await run_in_threadpool(_recognition(request).delete_eqa, eqa_id))


# -- checks and decisions ---------------------------------------------------------------------

class CheckBody(PrintableModel):
    """One order to check."""

    patient: str = Field(..., max_length=300, description="Patient/<id> or an identifier system|value")
    code: str = Field(..., max_length=300, description="The requested item: the orderer's local code "
                      "(urn:hub:code:<source>:lab-item|CODE) or a standard code (http://loinc.org|2345-7)")
    institution: str | None = Field(None, max_length=64, description="The ordering institution (default: the "
                                    "client's own)")
    at: datetime | None = Field(None, description="The order time (default: now)")
    unit: str | None = Field(None, max_length=40, description="The unit to offer results in (UCUM)")


class DecisionBody(PrintableModel):
    """The decision taken on a checked order."""

    decision: str = Field(..., description="recognized or retested")
    reason: str | None = Field(None, max_length=32, description="For retested: one of the six reasons")
    comment: str | None = Field(None, max_length=2000)


@router.post("/recognition/check", summary="Check an order for recognizable prior results")
async def check(request: Request, body: CheckBody, principal: Checker) -> JSONResponse:
    """The recognizable results (value in the orderer's unit where comparable, institution, date, HR) and
    the other candidates with their reasons; the check's id is the handle of the decision."""
    order = CheckRequest(body.patient, _ordering(principal, body.institution), body.code,
                         aware(body.at) if body.at else None, body.unit)
    [result] = await run_in_threadpool(_recognition(request).check, [order], _actor(principal))
    return JSONResponse(result.as_dict())


@router.post("/recognition/checks/{check_id}/decision", summary="Record the decision on a checked order")
async def decide(request: Request, check_id: Annotated[str, FastApiPath(max_length=36)], body: DecisionBody,
                 principal: Checker) -> JSONResponse:
    """``recognized`` (the order was dropped) or ``retested`` with one of the six reasons."""
    [decided] = await run_in_threadpool(_recognition(request).decide,
                                        [(check_id, body.decision, body.reason, body.comment)],
                                        _actor(principal), _institutions(principal))
    return JSONResponse(decided)


@router.get("/recognition/figures", summary="Recognition figures per institution and period")
def figures(request: Request, principal: Viewer, first: Annotated[date, Query(alias="from")],
            last: Annotated[date, Query(alias="to")], period: str = "month", by: str = "institution") -> JSONResponse:
    """Checks, eligible orders, recognized, re-tested by reason, recognition rate, avoided tests and cost."""
    if (last - first).days > 3660:
        raise InvalidRequest("The period is limited to ten years")
    recognition = _recognition(request)
    # a bound client sees the figures of the institutions it reads (its consortia resolved to theirs)
    reach = fhir_access(principal, recognition.database).institutions
    return JSONResponse(recognition.figures(first, last, period=period, group=by, institutions=reach))


# -- CDS Hooks --------------------------------------------------------------------------------

@router.get("/cds-services", summary="CDS Hooks discovery")
def cds_discovery() -> JSONResponse:
    """The services: ``hr-order-select`` and ``hr-order-sign``."""
    return JSONResponse(cds.discovery())


def _hook(recognition: Recognition, service_id: str, body: Any, principal: Principal,
          base_url: str) -> dict[str, Any]:
    requests = cds.check_requests(service_id, body, principal.institutions, recognition.knows_patient)
    for order in requests:
        _ordering(principal, order.institution)
    results: list[CheckResult] = recognition.check(requests, _actor(principal)) if requests else []
    return cds.cards(results, base_url)


@router.post("/cds-services/{service_id}", summary="Call a CDS Hooks service")
async def cds_call(request: Request, service_id: Annotated[str, FastApiPath(max_length=64)],
                   principal: Checker) -> JSONResponse:
    """A hook request in, cards out (one per draft order with a recognizable prior result)."""
    cds.service_of(service_id)
    body = parse_body(await read_body(request, request.app.state.settings), request.headers.get("content-type"),
                      JSON_TYPES)
    base_url = str(request.base_url).rstrip("/")
    return JSONResponse(await run_in_threadpool(_hook, _recognition(request), service_id, body, principal,
                                                base_url))


@router.post("/cds-services/{service_id}/feedback", summary="CDS Hooks feedback: the decisions on cards")
async def cds_feedback(request: Request, service_id: Annotated[str, FastApiPath(max_length=64)],
                       principal: Checker) -> JSONResponse:
    """accepted (取消本次申请) → recognized; overridden, or 仍然开立 → re-tested with its reason."""
    cds.service_of(service_id)
    body = parse_body(await read_body(request, request.app.state.settings), request.headers.get("content-type"),
                      JSON_TYPES)
    recorded = await run_in_threadpool(_recognition(request).decide, cds.feedback_decisions(body),
                                       _actor(principal), _institutions(principal))
    return JSONResponse({"recorded": recorded})
