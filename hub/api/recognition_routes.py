"""检查检验结果互认 over HTTP: the catalogue and quality-control records, checks, decisions, figures,
and the CDS Hooks services ordering systems call at order time.

- ``/recognition/catalogue`` (GET; PUT YAML or JSON: permission ``manage-recognition``)
- ``/recognition/eqa`` (GET, POST; DELETE ``/recognition/eqa/{id}``: ``manage-recognition``)
- ``POST /recognition/remark`` (``manage-recognition``), ``GET /recognition/catalogue/history``
- ``POST /recognition/check`` and ``POST /recognition/checks/{id}/decision`` (``check-recognition``)
- ``GET /recognition/figures``, ``GET /recognition/checks`` (``read-indicators``), ``GET /recognition/checks/{id}``
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

from hub.api.http import JSON_TYPES, PrintableModel, parse_body, printable, read_body
from hub.api.security import Authenticated, fhir_access, requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.errors import Forbidden, InvalidRequest, NotFound
from hub.fhir.search_values import local_zone
from hub.recognition import cds
from hub.recognition.check import CheckRequest, CheckResult
from hub.recognition.decisions import Decision
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
    return JSONResponse(await run_in_threadpool(_recognition(request).load_catalogue, body, _actor(principal),
                                                wait=False))


@router.get("/recognition/catalogue/history", summary="Every recognition catalogue loaded")
def catalogue_history(request: Request, principal: Authenticated) -> JSONResponse:
    """Versions, newest first: version, number of items, when and by whom."""
    return JSONResponse({"versions": _recognition(request).catalogue_history()})


@router.post("/recognition/remark", summary="Set the HR mark again on every stored result")
async def remark(request: Request, principal: Manager, level_rules_only: bool = False) -> JSONResponse:
    """A repair (after an interrupted re-marking), or after institutions' levels changed (``level_rules_only``);
    results whose mark is right are left as they are. Large re-markings run in the background."""
    return JSONResponse(await run_in_threadpool(_recognition(request).remark, level_rules_only=level_rules_only,
                                                wait=False))


@router.get("/recognition/remark", summary="The background re-marking: running, waiting, last outcome")
def remark_status(request: Request, principal: Manager) -> JSONResponse:
    """Re-markings reading more than 5,000 results run in the background after the change is answered."""
    return JSONResponse(_recognition(request).remarker.status())


@router.get("/recognition/eqa", summary="Quality-control (室间质评) records")
def list_eqa(request: Request, principal: Authenticated, institution: str | None = None,
             item: str | None = None, year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> JSONResponse:
    """Records filtered by institution, item and year."""
    printable("institution", institution), printable("item", item)
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
    return JSONResponse(await run_in_threadpool(_recognition(request).save_eqa, records, _actor(principal),
                                                wait=False))


@router.delete("/recognition/eqa/{eqa_id}", summary="Remove a quality-control record")
async def delete_eqa(request: Request, eqa_id: Annotated[int, FastApiPath(ge=1, le=2**63 - 1)],
                     principal: Manager) -> JSONResponse:
    """The results it decided are re-marked."""
    return JSONResponse(await run_in_threadpool(_recognition(request).delete_eqa, eqa_id, wait=False))


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
    clinician: str | None = Field(None, max_length=200, description="Who decided, as the ordering system names "
                                  "them (Practitioner/…)")


def _local_time(moment: datetime | None) -> datetime | None:
    """An order time; one written without a zone is the hub's local time (``HUB_TIMEZONE``)."""
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=local_zone())


def _audit_patients(request: Request, results: list[CheckResult]) -> None:
    """The hub's patients whose results a check showed, for the audit trail (not those the caller named)."""
    request.state.audit_patients = sorted({s for r in results for s in r.subjects})


@router.post("/recognition/check", summary="Check an order for recognizable prior results")
async def check(request: Request, body: CheckBody, principal: Checker) -> JSONResponse:
    """The recognizable results (value in the orderer's unit where comparable, institution, date, HR) and
    the other candidates with their reasons; the check's id is the handle of the decision."""
    order = CheckRequest(body.patient, _ordering(principal, body.institution), body.code, _local_time(body.at),
                         body.unit, bound=principal.bound)
    [result] = await run_in_threadpool(_recognition(request).check, [order], _actor(principal))
    _audit_patients(request, [result])
    return JSONResponse(result.as_dict())


@router.get("/recognition/checks", summary="Recorded checks and their decisions")
def list_checks(request: Request, principal: Viewer, first: Annotated[date, Query(alias="from")],
                last: Annotated[date, Query(alias="to")], decision: str | None = None, reason: str | None = None,
                eligible: bool | None = None, offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                count: Annotated[int, Query(ge=1, le=500)] = 100) -> JSONResponse:
    """Newest first; ``decision`` recognized, retested or undecided; ``reason`` one of the six (or
    unspecified); ``eligible`` true for orders that had a recognizable result."""
    printable("decision", decision), printable("reason", reason)
    recognition = _recognition(request)
    reach = fhir_access(principal, recognition.database).institutions
    return JSONResponse(recognition.checks(first, last, institutions=reach, decision=decision, reason=reason,
                                           eligible=eligible, offset=offset, count=count))


@router.get("/recognition/checks/{check_id}", summary="One recorded check with its decisions")
def read_check(request: Request, check_id: Annotated[str, FastApiPath(max_length=36)],
               principal: Authenticated) -> JSONResponse:
    """The check as recorded and every decision taken on it (for clients that check or read the figures, of
    the institutions they reach)."""
    printable("check id", check_id)
    if not (principal.can(Permission.CHECK_RECOGNITION) or principal.can(Permission.READ_INDICATORS)):
        raise Forbidden("Reading checks needs the permission check-recognition or read-indicators")
    recognition = _recognition(request)
    found = recognition.check_record(check_id)
    reach = fhir_access(principal, recognition.database).institutions
    if found is None or (reach is not None and found["institution"] not in reach):
        raise NotFound(f"No recognition check {check_id}")
    return JSONResponse(found)


@router.post("/recognition/checks/{check_id}/decision", summary="Record the decision on a checked order")
async def decide(request: Request, check_id: Annotated[str, FastApiPath(max_length=36)], body: DecisionBody,
                 principal: Checker) -> JSONResponse:
    """``recognized`` (the order was dropped) or ``retested`` with one of the six reasons; every decision is
    kept, the check shows the latest."""
    printable("check id", check_id)
    wanted = Decision(check_id, body.decision, body.reason, body.comment, body.clinician)
    [decided] = await run_in_threadpool(_recognition(request).decide, [wanted], _actor(principal),
                                        _institutions(principal))
    return JSONResponse(decided)


@router.get("/recognition/figures", summary="Recognition figures per institution and period")
def figures(request: Request, principal: Viewer, first: Annotated[date, Query(alias="from")],
            last: Annotated[date, Query(alias="to")], period: str = "month", by: str = "institution") -> JSONResponse:
    """Checks, eligible orders, recognized, re-tested by reason, recognition rate, avoided tests and cost."""
    printable("period", period), printable("by", by)
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


def _hook(recognition: Recognition, service_id: str, body: Any, principal: Principal) -> list[CheckResult]:
    requests = cds.check_requests(service_id, body, principal.institutions, principal.bound,
                                  recognition.knows_patient)
    for order in requests:
        _ordering(principal, order.institution)
    return recognition.check(requests, _actor(principal)) if requests else []


@router.post("/cds-services/{service_id}", summary="Call a CDS Hooks service")
async def cds_call(request: Request, service_id: Annotated[str, FastApiPath(max_length=64)],
                   principal: Checker) -> JSONResponse:
    """A hook request in, cards out (one per draft order with a recognizable prior result)."""
    cds.service_of(service_id)
    body = parse_body(await read_body(request, request.app.state.settings), request.headers.get("content-type"),
                      JSON_TYPES)
    results = await run_in_threadpool(_hook, _recognition(request), service_id, body, principal)
    _audit_patients(request, results)
    return JSONResponse(cds.cards(results))


@router.post("/cds-services/{service_id}/feedback", summary="CDS Hooks feedback: the decisions on cards")
async def cds_feedback(request: Request, service_id: Annotated[str, FastApiPath(max_length=64)],
                       principal: Checker) -> JSONResponse:
    """accepted (取消本次申请) → recognized; overridden, or 仍然开立 → re-tested with its reason (recorded as
    unspecified when the ordering system sends none)."""
    cds.service_of(service_id)
    body = parse_body(await read_body(request, request.app.state.settings), request.headers.get("content-type"),
                      JSON_TYPES)
    recorded = await run_in_threadpool(_recognition(request).decide, cds.feedback_decisions(body),
                                       _actor(principal), _institutions(principal))
    return JSONResponse({"recorded": recorded})
