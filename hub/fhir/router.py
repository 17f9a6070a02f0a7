"""Routing a FHIR request given as method + relative URL (Bundle entries use this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.errors import InvalidRequest, NotSupported
from hub.fhir.search import parse_query
from hub.fhir.service import FhirService, Outcome
from hub.privacy import clip


@dataclass(frozen=True)
class FhirRequest:
    """One interaction: ``url`` is relative to the FHIR base (``Patient/1``, ``Patient?identifier=…``).

    Absolute URLs are made relative with :func:`relative_url` before a request is built.
    """

    method: str
    url: str
    body: Any = None
    if_match: str | None = None
    if_none_exist: str | None = None


def relative_url(url: str, base_url: str) -> str:
    """``url`` without the server's base (absolute URLs of this server are accepted)."""
    if base_url and url.startswith(base_url + "/"):
        return url[len(base_url) + 1:]
    if "://" in url.split("?", 1)[0]:
        raise InvalidRequest(f"The URL '{clip(url, 120)}' is not on this server")
    return url.lstrip("/")


def dispatch(service: FhirService, request: FhirRequest, base_url: str) -> Outcome:
    """Perform ``request`` with ``service``."""
    path, _, query = request.url.partition("?")
    parts = [p for p in path.split("/") if p]
    method = request.method.upper()
    if not parts:
        raise NotSupported(f"{method} on the server base is not supported inside a Bundle")
    resource_type = parts[0]
    if method in ("GET", "HEAD"):
        params = parse_query(query)
        match parts:
            case ["_history"]:
                return service.history(None, None, params, base_url)
            case [_]:
                return service.search(resource_type, params, base_url)
            case [_, "_history"]:
                return service.history(resource_type, None, params, base_url)
            case [_, resource_id]:
                return service.read(resource_type, resource_id)
            case [_, resource_id, "_history"]:
                return service.history(resource_type, resource_id, params, base_url)
            case [_, resource_id, "_history", version]:
                return service.vread(resource_type, resource_id, version)
    elif method == "POST" and len(parts) == 1:
        return service.create(resource_type, request.body, if_none_exist=request.if_none_exist)
    elif method in ("PUT", "PATCH", "DELETE") and len(parts) == 1:
        if not query:
            raise InvalidRequest(f"{method} {resource_type} needs an id or search criteria")
        if method == "PUT":
            return service.conditional_update(resource_type, query, request.body, if_match=request.if_match)
        if method == "PATCH":
            return service.conditional_patch(resource_type, query, request.body, if_match=request.if_match)
        return service.conditional_delete(resource_type, query)
    elif method in ("PUT", "PATCH", "DELETE") and len(parts) == 2:
        resource_id = parts[1]
        if method == "PUT":
            return service.update(resource_type, resource_id, request.body, if_match=request.if_match)
        if method == "PATCH":
            return service.patch(resource_type, resource_id, request.body, if_match=request.if_match)
        return service.delete(resource_type, resource_id, if_match=request.if_match)
    raise InvalidRequest(f"{method} {clip(request.url, 120)} is not a FHIR interaction this server supports")
