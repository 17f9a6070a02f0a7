"""HTTP helpers shared by the routers: bodies, content types, FHIR responses, errors."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationInfo, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.security import Authenticated, fhir_access
from hub.auth.principal import Principal
from hub.config import Settings
from hub.errors import (
    HubError,
    InvalidRequest,
    Issue,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from hub.fhir import jsonio
from hub.fhir.outcome import from_error, operation_outcome
from hub.fhir.response import Rendered, parse_handling, parse_prefer, render
from hub.fhir.search import CONTROL_CHARACTERS
from hub.fhir.service import FhirService, Outcome
from hub.privacy import clip
from hub.store.database import Database

log = logging.getLogger("hub.api")

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json")
_XML_FORMATS = ("xml", "text/xml", "application/xml", "application/fhir+xml", "html", "text/html")


def media_type_of(header: str | None) -> str:
    """The bare media type of a Content-Type/Accept item (no parameters, lower case)."""
    return (header or "").split(";", 1)[0].strip().lower()


def response_media_type(request: Request) -> str:
    """``application/json`` if that is what the client asked for, else FHIR JSON; 406 if neither."""
    fmt = request.query_params.get("_format")
    if fmt and fmt.lower() in _XML_FORMATS:
        raise NotAcceptable("This server speaks FHIR JSON only (_format=json)")
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    types = [media_type_of(item) for item in accept.split(",")]
    if any(t in ("application/fhir+json", "*/*", "application/*", "") or t.endswith("+json") for t in types):
        return FHIR_JSON
    if "application/json" in types:
        return "application/json"
    raise NotAcceptable(f"Cannot produce '{clip(accept, 80)}'; this server speaks application/fhir+json")


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request body, refused with 413 past the configured limit."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(body: bytes, content_type: str | None, allowed: tuple[str, ...]) -> Any:
    """Check the content type and parse the JSON body."""
    media = media_type_of(content_type)
    if media not in allowed:
        shown = media or "(none)"
        raise UnsupportedMediaType(f"Content-Type {shown} is not accepted here; send {' or '.join(allowed)}")
    if not body.strip():
        raise InvalidRequest("The request body is empty")
    return jsonio.loads(body)


@dataclass
class FhirContext:
    """Per-request FHIR plumbing: database, base URL, preferences."""

    database: Database
    settings: Settings
    base_url: str
    prefer: str
    media_type: str
    #: Who is calling.
    principal: Principal
    #: ``Prefer: handling=lenient``: unknown search parameters are ignored, not refused.
    lenient: bool = False

    @contextmanager
    def service(self, *, write: bool) -> Iterator[FhirService]:
        """A FhirService of the principal inside one unit of work (committed when the block ends without error)."""
        access = fhir_access(self.principal, self.database)
        with self.database.fhir_service(write=write, access=access, settings=self.settings) as service:
            yield service

    def respond(self, outcome: Outcome) -> Response:
        """The HTTP response for ``outcome``."""
        return self.send(render(outcome, self.base_url, self.prefer))

    def send(self, rendered: Rendered) -> Response:
        """Copy a rendered FHIR response onto a Starlette response."""
        return Response(
            content=rendered.body or b"",
            status_code=rendered.status,
            headers=rendered.headers,
            media_type=self.media_type if rendered.body is not None else None,
        )


def base_url_of(request: Request, settings: Settings) -> str:
    """The public base URL of the FHIR endpoint for this request."""
    if settings.public_base_url:
        return settings.public_base_url
    return str(request.base_url).rstrip("/") + "/fhir"


def token_endpoint(request: Request, settings: Settings) -> str:
    """The URL of the token endpoint (``/auth/token`` beside the FHIR base)."""
    base = base_url_of(request, settings)
    root = base[: -len("/fhir")] if base.endswith("/fhir") else base
    return f"{root}/auth/token"


async def fhir_context(request: Request, principal: Authenticated) -> FhirContext:
    """FastAPI dependency: the FhirContext of this request (its principal authenticated)."""
    settings: Settings = request.app.state.settings
    return FhirContext(
        principal=principal,
        database=request.app.state.database,
        settings=settings,
        base_url=base_url_of(request, settings),
        prefer=parse_prefer(request.headers.get("prefer")),
        media_type=response_media_type(request),
        lenient=parse_handling(request.headers.get("prefer")) == "lenient",
    )


def outcome_response(status: int, outcome: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """An OperationOutcome response."""
    return Response(jsonio.dumps(outcome), status_code=status, headers=headers, media_type=FHIR_JSON)


async def hub_error_handler(_request: Request, error: Exception) -> Response:
    """HubError → its status and OperationOutcome."""
    assert isinstance(error, HubError)
    return outcome_response(error.status, from_error(error), error.headers or None)


async def http_error_handler(request: Request, error: Exception) -> Response:
    """Starlette's routing errors (404, 405) as OperationOutcomes."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        return await hub_error_handler(request, NotFound(f"No FHIR endpoint at {clip(request.url.path, 120)}"))
    if error.status_code == 405:
        err = MethodNotAllowed(f"{request.method} is not allowed on {clip(request.url.path, 120)}")
        return outcome_response(405, from_error(err), dict(error.headers or {}))
    issue = Issue("processing" if error.status_code < 500 else "exception", str(error.detail)[:300])
    return outcome_response(error.status_code, operation_outcome([issue]), dict(error.headers or {}))


async def validation_error_handler(_request: Request, error: Exception) -> Response:
    """FastAPI request validation (path/query types) as a 400 OperationOutcome."""
    assert isinstance(error, RequestValidationError)
    issues = [
        Issue("invalid", f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}")
        for e in error.errors()
    ]
    return outcome_response(400, operation_outcome(issues or [Issue("invalid", "Invalid request")]))


def internal_error_response(method: str, path: str) -> Response:
    """Log the current exception with a reference; a 500 OperationOutcome without internals."""
    reference = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", reference, method, clip(path, 200))
    issue = Issue("exception", f"Internal server error (reference {reference})")
    return outcome_response(500, operation_outcome([issue]))


class CatchAllMiddleware:
    """Answers any unhandled exception with a 500 OperationOutcome and keeps the connection.

    (Starlette's own last-resort handler re-raises, which makes the server drop the
    keep-alive connection, so the client's next request fails too.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            response = internal_error_response(scope.get("method", ""), scope.get("path", ""))
            await response(scope, receive, send)


def printable(name: str, value: str | None) -> str | None:
    """A parameter's ``value``, refused (400) when it holds control characters (a NUL cannot even be stored)."""
    if value is not None and CONTROL_CHARACTERS.search(value):
        raise InvalidRequest(f"{name} must not contain control characters")
    return value


class PrintableModel(BaseModel):
    """A JSON request body whose texts hold no control characters (400 naming the field, never a 500)."""

    @field_validator("*")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and CONTROL_CHARACTERS.search(value):
            raise ValueError(f"{info.field_name} must not contain control characters")
        if isinstance(value, list) and any(isinstance(v, str) and CONTROL_CHARACTERS.search(v) for v in value):
            raise ValueError(f"{info.field_name} must not contain control characters")
        return value
