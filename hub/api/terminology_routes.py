"""Terminology operations over HTTP: ``$lookup``, ``$validate-code``, ``$expand``, ``$translate``, ``$subsumes``.

Each takes URL parameters (GET) or a ``Parameters`` body (POST) and answers FHIR JSON;
the caller needs read access to the terminology resources. Registered before the
generic FHIR routes (``/fhir/CodeSystem/$lookup`` is not a read of id ``$lookup``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hub.api.fhir_routes import Body, Context
from hub.api.http import JSON_TYPES, parse_body
from hub.coding.mapping_tables import local_system, split_local
from hub.coding.terminology import PROCESS_CACHE, Terminology
from hub.fhir import jsonio
from hub.fhir.parameters import OperationInput
from hub.fhir.resource_types import require_id
from hub.fhir.response import Rendered
from hub.store.database import Database

router = APIRouter(prefix="/fhir", tags=["Terminology"])
Operation = Callable[[Terminology, OperationInput, str | None], dict[str, Any]]


def profile_aliases(database: Database) -> Callable[[str], list[str]]:
    """A source's local code system → the same element's system of its vendor profile (whose tables apply)."""
    def aliases(system: str) -> list[str]:
        local = split_local(system)
        if local is None:
            return []
        with database.sources(write=False) as store:
            source = store.get(local[0])
        return [local_system(source.adapter, local[1])] if source is not None else []

    return aliases


def _run(ctx: Context, inp: OperationInput, operation: Operation, resource_id: str | None) -> Response:
    if resource_id is not None:
        require_id(resource_id)
    with ctx.service(write=False) as service:
        terminology = Terminology(service, PROCESS_CACHE, profile_aliases(ctx.database))
        result = operation(terminology, inp, resource_id)
    return ctx.send(Rendered(200, jsonio.dumps(result)))


def _get(request: Request, ctx: Context, operation: Operation, resource_id: str | None = None) -> Response:
    return _run(ctx, OperationInput.from_query(request.query_params.multi_items()), operation, resource_id)


def _post(request: Request, ctx: Context, body: bytes, operation: Operation,
          resource_id: str | None = None) -> Response:
    parsed = parse_body(body, request.headers.get("content-type"), JSON_TYPES)
    return _run(ctx, OperationInput.from_body(parsed, request.query_params.multi_items()), operation, resource_id)


def _register(path: str, operation: Operation, summary: str, instance: bool) -> None:
    """GET and POST of an operation at type level (and instance level)."""

    def get_type(request: Request, ctx: Context) -> Response:
        return _get(request, ctx, operation)

    def post_type(request: Request, ctx: Context, body: Body) -> Response:
        return _post(request, ctx, body, operation)

    resource_type, name = path.split("/")
    for function, method in ((get_type, router.get), (post_type, router.post)):
        function.__doc__ = summary
        function.__name__ = f"{method.__name__}_{resource_type}_{name[1:]}".replace("-", "_")
        method(f"/{path}", summary=f"{resource_type} {name}")(function)
    if not instance:
        return

    def get_instance(resource_id: str, request: Request, ctx: Context) -> Response:
        return _get(request, ctx, operation, resource_id)

    def post_instance(resource_id: str, request: Request, ctx: Context, body: Body) -> Response:
        return _post(request, ctx, body, operation, resource_id)

    for function, method in ((get_instance, router.get), (post_instance, router.post)):
        function.__doc__ = summary
        function.__name__ = f"{method.__name__}_{resource_type}_instance_{name[1:]}".replace("-", "_")
        method(f"/{resource_type}/{{resource_id}}/{name}", summary=f"{resource_type} instance {name}")(function)


_register("CodeSystem/$lookup", lambda terminology, inp, _id: terminology.lookup(inp), "Display, designations and properties of a code", instance=False)
_register("CodeSystem/$validate-code", Terminology.validate_code_system, "Is a code (and display) in the code system?", instance=True)
_register("CodeSystem/$subsumes", Terminology.subsumes, "How code A relates to code B in the hierarchy", instance=True)
_register("ValueSet/$expand", Terminology.expand, "The codes of a value set (filter, offset, count)", instance=True)
_register("ValueSet/$validate-code", Terminology.validate_value_set, "Is a code in the value set?", instance=True)
_register("ConceptMap/$translate", Terminology.translate, "A code's mappings (R4 equivalence; reverse)", instance=True)
