"""The master patient index over HTTP: ``Patient/$match``, persons, manual decisions, the match review queue.

``/fhir/Patient/$match`` is FHIR (R4 semantics); the rest is the hub's JSON API for
data-governance staff (permission ``review-matches``). Registered before the generic FHIR
routes (``/fhir/Patient/$match`` is not a search of id ``$match``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from hub.api.fhir_routes import Body, Context
from hub.api.http import JSON_TYPES, PrintableModel, parse_body
from hub.api.security import requires
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.empi.engine import Engine
from hub.empi.golden import MATCH_GRADE_EXTENSION
from hub.empi.match import match_patient
from hub.empi.operations import LINK, NOT_LINK, EmpiOperations
from hub.empi.views import person_of_patient, person_view, review_view
from hub.errors import Forbidden, InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.parameters import OperationInput
from hub.fhir.resource_types import require_id
from hub.fhir.response import Rendered
from hub.fhir.validation import validate_resource

fhir_router = APIRouter(prefix="/fhir", tags=["FHIR R4"])
router = APIRouter(tags=["EMPI"])
Reviewer = Annotated[Principal, Depends(requires(Permission.REVIEW_MATCHES))]
ReviewId = Annotated[int, FastApiPath(ge=1, le=2**63 - 1)]
#: The largest list offset.
MAX_OFFSET = 1_000_000_000
REVIEW_STATUSES = ("open", "linked", "not-linked", "obsolete")


def _engine(request: Request) -> Engine:
    return request.app.state.empi  # type: ignore[no-any-return]


def _actor(principal: Principal) -> str:
    return f"client:{principal.client_id}"


# -- Patient/$match ---------------------------------------------------------------------------

@fhir_router.post("/Patient/$match", summary="Patient $match: the regional persons a Patient may be")
def patient_match(request: Request, ctx: Context, body: Body) -> Response:
    """R4 ``$match``: a ``Parameters`` body with ``resource`` (a Patient), optional ``onlyCertainMatches``
    and ``count``; answers a searchset Bundle of golden Patients with ``search.score`` and the
    match-grade extension. Golden Patients span institutions: institution-bound clients may not call it."""
    if ctx.principal.bound:
        raise Forbidden("Patient/$match searches every institution's patients; an institution-bound client "
                        "may not call it")
    ctx.principal.access(None).require("Patient", "s")
    parsed = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    if isinstance(parsed, dict) and parsed.get("resourceType") == "Patient":
        inp = OperationInput({"resource": [parsed]})
    else:
        inp = OperationInput.from_body(parsed)
    resource = inp.resource("resource")
    if resource is None or resource.get("resourceType") != "Patient":
        raise InvalidRequest("Patient/$match needs the parameter 'resource' holding a Patient")
    validate_resource(resource, "Patient")
    only_certain = inp.boolean("onlyCertainMatches")
    count = inp.integer("count", 10, low=1, high=100)
    results = match_patient(_engine(request), resource, count=count, only_certain=only_certain)
    entries = []
    for result in results:
        entries.append({
            "fullUrl": f"{ctx.base_url}/Patient/{result.golden.id}",
            "resource": jsonio.loads_stored(result.golden.content or b"{}"),
            "search": {"extension": [{"url": MATCH_GRADE_EXTENSION, "valueCode": result.grade}],
                       "mode": "match", "score": round(result.probability, 4)},
        })
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    return ctx.send(Rendered(200, jsonio.dumps(bundle)))


# -- persons and manual decisions -------------------------------------------------------------

class Reasoned(PrintableModel):
    """Every manual decision names its reason (kept in the history)."""

    reason: str = Field(..., min_length=1, max_length=2000)


class LinkRequest(Reasoned):
    patient: str = Field(..., max_length=64, description="The source Patient id")
    person: str = Field(..., max_length=64, description="The person (golden Patient id) to put it under")


class UnlinkRequest(Reasoned):
    patient: str = Field(..., max_length=64, description="The source Patient id to take out into a new person")


class MergeRequest(Reasoned):
    source: str = Field(..., max_length=64, description="The person merged away")
    target: str = Field(..., max_length=64, description="The person that stays")


class UnmergeRequest(Reasoned):
    person: str = Field(..., max_length=64, description="The person merged away earlier")


class NotDuplicateRequest(Reasoned):
    persons: list[str] = Field(..., min_length=2, max_length=2, description="Two persons that are different people")


class MatchDecision(Reasoned):
    decision: str = Field(..., description=f"'{LINK}' or '{NOT_LINK}'")
    version: int = Field(..., ge=1, le=2**31 - 1, description="The item's version the reviewer saw (409 if it changed)")


def _ids(*values: str) -> None:
    for value in values:
        require_id(value)


async def _decide(request: Request, run: Any) -> JSONResponse:
    """Run a decision; the answer names every Patient it touched as a reference (the audit trail notes them)."""
    result = await run_in_threadpool(run, EmpiOperations(_engine(request)))
    touched: set[str] = set()
    for value in result.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                touched.add(item)
    result["patients"] = [{"reference": f"Patient/{i}"} for i in sorted(touched - {LINK, NOT_LINK})]
    return JSONResponse(result)


@router.get("/empi/status", summary="Queue length and persons")
def empi_status(request: Request, principal: Reviewer) -> JSONResponse:
    """How many Patient writes wait for matching, and the open review items."""
    engine = _engine(request)
    with engine.database.empi(write=False) as store:
        _items, open_reviews = store.reviews(status="open", limit=1)
        return JSONResponse({"queue": store.queue_length(), "open_reviews": open_reviews,
                             "thresholds": {"auto_link": engine.rules.auto_link, "review": engine.rules.review}})


@router.get("/empi/persons/{person_id}", summary="A regional person: sources, links and history")
def read_person(request: Request, person_id: str, principal: Reviewer) -> JSONResponse:
    """By person id (the golden Patient id) or regional identifier (区域主索引号)."""
    _ids(person_id)
    database = _engine(request).database
    with database.empi_batch(write=False) as (service, store):
        return JSONResponse(person_view(service, store, person_id))


@router.get("/empi/patients/{patient_id}", summary="The regional person of a source Patient")
def read_patient_person(request: Request, patient_id: str, principal: Reviewer) -> JSONResponse:
    _ids(patient_id)
    database = _engine(request).database
    with database.empi_batch(write=False) as (service, store):
        return JSONResponse(person_view(service, store, person_of_patient(store, patient_id)))


@router.post("/empi/$link", summary="Put a source Patient under a person (manual, never undone by matching)")
async def link(request: Request, body: LinkRequest, principal: Reviewer) -> JSONResponse:
    _ids(body.patient, body.person)
    return await _decide(request, lambda ops: ops.link(body.patient, body.person, _actor(principal), body.reason))


@router.post("/empi/$unlink", summary="Take a source Patient out of its person (manual)")
async def unlink(request: Request, body: UnlinkRequest, principal: Reviewer) -> JSONResponse:
    _ids(body.patient)
    return await _decide(request, lambda ops: ops.unlink(body.patient, _actor(principal), body.reason))


@router.post("/empi/$do-not-match", summary="Mark a source Patient a placeholder identity: never matched")
async def do_not_match(request: Request, body: UnlinkRequest, principal: Reviewer) -> JSONResponse:
    """For 无名氏 admissions, shared test records and the like: it stands alone, nothing links to it."""
    _ids(body.patient)
    return await _decide(request, lambda ops: ops.do_not_match(body.patient, _actor(principal), body.reason))


@router.post("/empi/$merge", summary="Merge two persons (the source is replaced by the target)")
async def merge(request: Request, body: MergeRequest, principal: Reviewer) -> JSONResponse:
    _ids(body.source, body.target)
    return await _decide(request, lambda ops: ops.merge(body.source, body.target, _actor(principal), body.reason))


@router.post("/empi/$unmerge", summary="Undo the last merge of a person")
async def unmerge(request: Request, body: UnmergeRequest, principal: Reviewer) -> JSONResponse:
    _ids(body.person)
    return await _decide(request, lambda ops: ops.unmerge(body.person, _actor(principal), body.reason))


@router.post("/empi/$not-duplicate", summary="Two persons are different people")
async def not_duplicate(request: Request, body: NotDuplicateRequest, principal: Reviewer) -> JSONResponse:
    _ids(*body.persons)
    first, second = body.persons
    return await _decide(request, lambda ops: ops.not_duplicate(first, second, _actor(principal), body.reason))


# -- the review queue -------------------------------------------------------------------------

@router.get("/governance/matches", summary="Possible patient matches for review, highest score first")
def list_matches(
    request: Request, principal: Reviewer, status: str = "open",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0, count: Annotated[int, Query(ge=1, le=200)] = 20,
) -> JSONResponse:
    """Each item side by side: the record, the candidate person's sources, the field agreement."""
    if status not in REVIEW_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(REVIEW_STATUSES)}")
    database = _engine(request).database
    with database.empi_batch(write=False) as (service, store):
        items, total = store.reviews(status=status, limit=count, offset=offset)
        return JSONResponse({"total": total, "offset": offset,
                             "items": [review_view(service, store, item) for item in items]})


@router.get("/governance/matches/{review_id}", summary="One match review item")
def read_match(request: Request, review_id: ReviewId, principal: Reviewer) -> JSONResponse:
    database = _engine(request).database
    with database.empi_batch(write=False) as (service, store):
        item = store.review(review_id)
        if item is None:
            raise NotFound(f"No match review item {review_id}")
        return JSONResponse(review_view(service, store, item))


@router.post("/governance/matches/{review_id}/$decide", summary="Decide a match: link or not-link")
async def decide_match(request: Request, review_id: ReviewId, body: MatchDecision, principal: Reviewer) -> JSONResponse:
    return await _decide(request, lambda ops: ops.decide(review_id, body.version, body.decision, _actor(principal),
                                                         body.reason))

