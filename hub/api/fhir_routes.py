"""The FHIR REST API at ``/fhir``: each route adapts HTTP to one FhirService call."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from hub import __version__
from hub.api.http import (
    JSON_TYPES,
    FhirContext,
    base_url_of,
    fhir_context,
    media_type_of,
    parse_body,
    read_body,
    response_media_type,
    token_endpoint,
)
from hub.config import Settings
from hub.errors import MethodNotAllowed, UnsupportedMediaType
from hub.fhir import jsonio
from hub.fhir.bundle_entries import PATCH_CONTENT_TYPES
from hub.fhir.capability import capability_statement
from hub.fhir.resource_types import require_type
from hub.fhir.response import Rendered
from hub.fhir.transaction import process_bundle

router = APIRouter(prefix="/fhir", tags=["FHIR R4"])

Context = Annotated[FhirContext, Depends(fhir_context)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]
IfNoneExist = Annotated[str | None, Header(alias="If-None-Exist")]


async def _json_body(request: Request) -> bytes:
    return await read_body(request, request.app.state.settings)


Body = Annotated[bytes, Depends(_json_body)]


async def _resource_type(resource_type: str) -> str:
    """Path parameter check: unknown types are 404 before any body is read."""
    if resource_type == "metadata":
        raise MethodNotAllowed("metadata only answers GET")
    return require_type(resource_type)


TypeName = Annotated[str, Depends(_resource_type)]


def _reads_only(bundle: object) -> bool:
    """A Bundle whose entries all read (GET/HEAD) runs without taking the write lock."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    return isinstance(entries, list) and all(
        isinstance(e, dict) and isinstance(e.get("request"), dict) and e["request"].get("method") in ("GET", "HEAD")
        for e in entries
    )


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _query(request: Request) -> str:
    return request.url.query


@router.get("/metadata", summary="CapabilityStatement")
def metadata(request: Request) -> Response:
    """What this server supports (FHIR 4.0.1); needs no access token."""
    settings: Settings = request.app.state.settings
    database = request.app.state.database
    base_url = base_url_of(request, settings)
    with database.unit_of_work(write=False) as repository:
        registry = database.search_parameters.current(repository)
    body = capability_statement(base_url, __version__, registry, token_endpoint(request, settings))
    return Response(jsonio.dumps(body), media_type=response_media_type(request))


@router.post("", summary="Transaction or batch Bundle")
@router.post("/", include_in_schema=False)
def transaction(request: Request, ctx: Context, body: Body) -> Response:
    """Process a ``transaction`` (all or nothing) or ``batch`` Bundle."""
    bundle = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    with ctx.service(write=not _reads_only(bundle)) as service:
        result = process_bundle(service, bundle, ctx.base_url, ctx.prefer, max_entries=ctx.settings.max_bundle_entries)
    return ctx.send(Rendered(200, jsonio.dumps(result)))


@router.get("/_history", summary="System history")
def system_history(request: Request, ctx: Context) -> Response:
    """Every version of every resource, newest first."""
    with ctx.service(write=False) as service:
        outcome = service.history(None, None, _params(request), ctx.base_url)
    return ctx.respond(outcome)


@router.get("", summary="System search")
@router.get("/", include_in_schema=False)
def system_search(request: Request, ctx: Context) -> Response:
    """Search across types: ``_type`` and the common parameters (``_id``, ``_lastUpdated``, ``_tag``…)."""
    with ctx.service(write=False) as service:
        outcome = service.search(None, _params(request), ctx.base_url, lenient=ctx.lenient)
    return ctx.respond(outcome)


@router.get("/{resource_type}", summary="Search")
def search(resource_type: TypeName, request: Request, ctx: Context) -> Response:
    """Search a resource type with any of its R4 search parameters, chains, _include and _sort."""
    with ctx.service(write=False) as service:
        outcome = service.search(resource_type, _params(request), ctx.base_url, lenient=ctx.lenient)
    return ctx.respond(outcome)


@router.post("/{resource_type}/_search", summary="Search (form post)")
async def search_post(resource_type: TypeName, request: Request, ctx: Context) -> Response:
    """Search with parameters in an ``application/x-www-form-urlencoded`` body."""
    if media_type_of(request.headers.get("content-type")) not in ("application/x-www-form-urlencoded", ""):
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded parameters")
    raw = await read_body(request, ctx.settings)
    params = _params(request) + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)

    def run() -> Response:
        with ctx.service(write=False) as service:
            return ctx.respond(service.search(resource_type, params, ctx.base_url, lenient=ctx.lenient))

    return await run_in_threadpool(run)


@router.post("/{resource_type}", summary="Create", status_code=201)
def create(
    resource_type: TypeName, request: Request, ctx: Context, body: Body, if_none_exist: IfNoneExist = None
) -> Response:
    """Create a resource (server-assigned id); ``If-None-Exist`` makes it conditional."""
    resource = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    with ctx.service(write=True) as service:
        outcome = service.create(resource_type, resource, if_none_exist=if_none_exist)
    return ctx.respond(outcome)


@router.put("/{resource_type}", summary="Conditional update")
def conditional_update(
    resource_type: TypeName, request: Request, ctx: Context, body: Body, if_match: IfMatch = None
) -> Response:
    """Update the one resource matching the query (create if none; 412 if several)."""
    resource = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    with ctx.service(write=True) as service:
        outcome = service.conditional_update(resource_type, _query(request), resource, if_match=if_match)
    return ctx.respond(outcome)


@router.patch("/{resource_type}", summary="Conditional patch")
def conditional_patch(
    resource_type: TypeName, request: Request, ctx: Context, body: Body, if_match: IfMatch = None
) -> Response:
    """JSON-Patch the one resource matching the query."""
    operations = parse_body(body, request.headers.get("content-type"), PATCH_CONTENT_TYPES)
    with ctx.service(write=True) as service:
        outcome = service.conditional_patch(resource_type, _query(request), operations, if_match=if_match)
    return ctx.respond(outcome)


@router.delete("/{resource_type}", summary="Conditional delete")
def conditional_delete(resource_type: TypeName, request: Request, ctx: Context) -> Response:
    """Delete the one resource matching the query (412 if several)."""
    with ctx.service(write=True) as service:
        outcome = service.conditional_delete(resource_type, _query(request))
    return ctx.respond(outcome)


@router.get("/{resource_type}/_history", summary="Type history")
def type_history(resource_type: TypeName, request: Request, ctx: Context) -> Response:
    """Every version of every resource of a type, newest first."""
    with ctx.service(write=False) as service:
        outcome = service.history(resource_type, None, _params(request), ctx.base_url)
    return ctx.respond(outcome)


@router.get("/{resource_type}/{resource_id}", summary="Read")
@router.head("/{resource_type}/{resource_id}", include_in_schema=False)
def read(resource_type: TypeName, resource_id: str, ctx: Context) -> Response:
    """The current version, served as stored (410 if deleted)."""
    with ctx.service(write=False) as service:
        outcome = service.read(resource_type, resource_id)
    return ctx.respond(outcome)


@router.put("/{resource_type}/{resource_id}", summary="Update (or create with this id)")
def update(
    resource_type: TypeName, resource_id: str, request: Request, ctx: Context, body: Body, if_match: IfMatch = None
) -> Response:
    """Replace the resource; ``If-Match: W/"n"`` guards against lost updates."""
    resource = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    with ctx.service(write=True) as service:
        outcome = service.update(resource_type, resource_id, resource, if_match=if_match)
    return ctx.respond(outcome)


@router.patch("/{resource_type}/{resource_id}", summary="Patch")
def patch(
    resource_type: TypeName, resource_id: str, request: Request, ctx: Context, body: Body, if_match: IfMatch = None
) -> Response:
    """Apply a JSON Patch (``application/json-patch+json``)."""
    operations = parse_body(body, request.headers.get("content-type"), PATCH_CONTENT_TYPES)
    with ctx.service(write=True) as service:
        outcome = service.patch(resource_type, resource_id, operations, if_match=if_match)
    return ctx.respond(outcome)


@router.delete("/{resource_type}/{resource_id}", summary="Delete")
def delete(resource_type: TypeName, resource_id: str, ctx: Context, if_match: IfMatch = None) -> Response:
    """Delete the resource; its history is kept."""
    with ctx.service(write=True) as service:
        outcome = service.delete(resource_type, resource_id, if_match=if_match)
    return ctx.respond(outcome)


@router.get("/{resource_type}/{resource_id}/_history", summary="Instance history")
def instance_history(resource_type: TypeName, resource_id: str, request: Request, ctx: Context) -> Response:
    """Every version of one resource, newest first."""
    with ctx.service(write=False) as service:
        outcome = service.history(resource_type, resource_id, _params(request), ctx.base_url)
    return ctx.respond(outcome)


@router.get("/Patient/{patient_id}/$everything", summary="Patient $everything")
def everything(patient_id: str, request: Request, ctx: Context) -> Response:
    """The patient and every resource in its compartment, paged (``_type``, ``_since``, ``_count``)."""
    with ctx.service(write=False) as service:
        outcome = service.everything(patient_id, _params(request), ctx.base_url)
    return ctx.respond(outcome)


@router.get("/Patient/{patient_id}/{compartment_type}", summary="Patient compartment search")
def compartment_search(patient_id: str, compartment_type: str, request: Request, ctx: Context) -> Response:
    """Resources of one type in the patient's compartment, with any search parameters of that type."""
    with ctx.service(write=False) as service:
        outcome = service.compartment_search(patient_id, compartment_type, _params(request), ctx.base_url,
                                             lenient=ctx.lenient)
    return ctx.respond(outcome)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", summary="Version read")
@router.head("/{resource_type}/{resource_id}/_history/{version_id}", include_in_schema=False)
def vread(resource_type: TypeName, resource_id: str, version_id: str, ctx: Context) -> Response:
    """One version of the resource."""
    with ctx.service(write=False) as service:
        outcome = service.vread(resource_type, resource_id, version_id)
    return ctx.respond(outcome)
