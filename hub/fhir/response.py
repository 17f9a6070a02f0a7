"""Rendering an :class:`Outcome`: for an HTTP response, or for a Bundle entry.

This is FHIR REST semantics (ETag, Location, ``Prefer: return=``), kept free of any
web framework: the API layer copies the result onto its response object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from hub.fhir import jsonio
from hub.fhir.instants import format_instant, http_date
from hub.fhir.outcome import information
from hub.fhir.service import Outcome

RETURN_PREFERENCES = ("representation", "minimal", "OperationOutcome")


@dataclass(frozen=True)
class Rendered:
    """Status, headers and body bytes of a FHIR response."""

    status: int
    body: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


def parse_prefer(header: str | None) -> str:
    """The ``return=`` preference of a ``Prefer`` header (default: representation)."""
    for part in (header or "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip() == "return" and value.strip().strip('"') in RETURN_PREFERENCES:
                return value.strip().strip('"')
    return "representation"


def parse_handling(header: str | None) -> str:
    """The ``handling=`` preference of a ``Prefer`` header: ``strict`` (default) or ``lenient``."""
    for part in (header or "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key.strip() == "handling" and value.strip().strip('"') in ("strict", "lenient"):
                return value.strip().strip('"')
    return "strict"


def status_line(status: int) -> str:
    """``201 Created``."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def render(outcome: Outcome, base_url: str, prefer: str = "representation") -> Rendered:
    """The HTTP form of ``outcome``."""
    headers: dict[str, str] = {}
    stored = outcome.resource
    if stored is not None:
        headers["ETag"] = f'W/"{stored.version_id}"'
        headers["Last-Modified"] = http_date(stored.last_updated)
        if outcome.status == 201:
            headers["Location"] = f"{base_url}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    if outcome.body is not None:
        return Rendered(outcome.status, jsonio.dumps(outcome.body), headers)
    if stored is not None and not stored.deleted:
        if prefer == "minimal":
            return Rendered(outcome.status, None, headers)
        if prefer == "OperationOutcome":
            note = outcome.message or f"{status_line(outcome.status)}: {stored.resource_type}/{stored.id}"
            return Rendered(outcome.status, jsonio.dumps(information(note)), headers)
        return Rendered(outcome.status, stored.content, headers)
    if prefer == "minimal":
        return Rendered(204, None, headers)
    return Rendered(outcome.status, jsonio.dumps(information(outcome.message or status_line(outcome.status))), headers)


def entry_response(outcome: Outcome, prefer: str, method: str) -> dict[str, Any]:
    """A transaction/batch-response entry for ``outcome`` of a ``method`` entry.

    GET entries carry what they read; HEAD entries nothing; writes follow ``prefer``.
    """
    response: dict[str, Any] = {"status": status_line(outcome.status)}
    entry: dict[str, Any] = {}
    stored = outcome.resource
    if stored is not None:
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        response["etag"] = f'W/"{stored.version_id}"'
        response["lastModified"] = format_instant(stored.last_updated)
    include = method == "GET" or (method != "HEAD" and prefer == "representation")
    if outcome.body is not None and method != "HEAD":
        entry["resource"] = outcome.body
    elif stored is not None and stored.content is not None and include:
        entry["resource"] = jsonio.Fragment(stored.content)
    if prefer == "OperationOutcome" and outcome.message:
        response["outcome"] = information(outcome.message)
    entry["response"] = response
    return entry
