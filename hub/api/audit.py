"""The audit trail over HTTP: a middleware that records an AuditEvent per interaction, and
the admin-only ``/fhir/AuditEvent`` search and read."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.http import base_url_of, response_media_type
from hub.api.security import requires
from hub.auth.audit import AuditRecord, audit_event
from hub.auth.principal import Principal
from hub.auth.roles import Permission
from hub.errors import InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.resource_types import require_id
from hub.fhir.search import check_parameters
from hub.fhir.search_values import parse_date_value
from hub.privacy import clip, mask_text
from hub.store.audit_log import AuditLog, AuditQuery, AuditRow

#: Paths whose interactions are audited (metadata and discovery documents are not).
_AUDITED = re.compile(r"^/(fhir(/|$)|auth/token$|admin/|empi/|subscriptions/|governance/(conflicts|mappings|matches)"
                      r"|recognition/|cds-services/)")
_NOT_AUDITED = ("/fhir/metadata", "/fhir/.well-known/smart-configuration")
_LOCATION = re.compile(r"/fhir/([A-Za-z]+/[A-Za-z0-9\-.]{1,64})(?:/_history/|$)")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    """``text`` with control characters (a NUL cannot be stored as text) shown as ``?``."""
    return _CONTROL.sub("?", text)


def audit_row(record: AuditRecord) -> AuditRow:
    """The stored form of an audited interaction."""
    event = audit_event(record)
    return AuditRow(
        event_id=record.event_id, recorded=int(record.recorded.timestamp() * 1_000_000),
        client_id=record.client_id, action=record.action, subtype=record.interaction, outcome=record.outcome,
        resource_type=record.resource_type, entity=record.entity, source_ip=record.source_ip,
        content=jsonio.dumps(event), patients=tuple(sorted(record.all_patients())),
    )


class AuditMiddleware:
    """Records who did what to which patient's data, with the outcome and source address.

    It sees every answer, refusals (401/403) and failures included, so nothing escapes
    the trail; events are written in the background by :class:`~hub.store.audit_log.AuditLog`.
    """

    def __init__(self, app: ASGIApp, audit: AuditLog) -> None:
        self.app = app
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not _AUDITED.match(path) or path in _NOT_AUDITED:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        query = scope.get("query_string", b"").decode("latin-1")
        record = AuditRecord(scope.get("method", "")[:10], _printable(path), _printable(query),
                             client[0] if client else "")
        state = scope.setdefault("state", {})
        # The trail's own search results name patients; reading them is not an access to those patients.
        # An export file is recorded as itself (its job names what it holds), not scanned line by line.
        scan_response = not path.startswith(("/fhir/AuditEvent", "/fhir/$export-file/"))

        form_search = record.method == "POST" and path.endswith("/_search")

        async def audited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                record.add_patients_from(body)
                if form_search and len(record.query) < 8192:  # the parameters of a POST search
                    text = _printable(body[:8192].decode("utf-8", "replace"))
                    record.query = f"{record.query}&{text}" if record.query else text
            return message

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"location":
                        found = _LOCATION.search(value.decode("latin-1"))
                        record.written = found.group(1) if found else ""
            elif message["type"] == "http.response.body" and scan_response:
                record.add_patients_from(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, audited_receive, audited_send)
        finally:
            if "audit_patients" in state:  # the route knows whose data it showed (not whom the caller named)
                record.patients = set(state["audit_patients"])
            principal = state.get("principal")
            if principal is not None:
                record.client_id = principal.client_id
            elif state.get("claimed_client"):  # a failed login: who tried
                record.client_id = _printable(mask_text(str(state["claimed_client"])))[:64]
            record.status = record.status or 500
            self.audit.record(lambda: audit_row(record))


router = APIRouter(prefix="/fhir", tags=["audit"])
Auditor = Annotated[Principal, Depends(requires(Permission.READ_AUDIT))]
_LIST_PARAMS = {"agent": "clients", "entity": "entities", "action": "actions", "subtype": "subtypes",
                "outcome": "outcomes", "address": "addresses", "patient": "patients"}


def audit_query(params: list[tuple[str, str]], max_count: int) -> AuditQuery:
    """The audit search of FHIR-style parameters (``date``, ``agent``, ``patient``, ``entity``…)."""
    check_parameters(params)
    fields: dict[str, list[str]] = {name: [] for name in _LIST_PARAMS.values()}
    dates = []
    count, offset = 20, 0
    for name, value in params:
        if name == "date":
            dates.append(parse_date_value(name, value))
        elif name in _LIST_PARAMS:
            values = [v.split("|")[-1] for v in value.split(",")]
            if name == "patient":
                values = [v.removeprefix("Patient/") for v in values]
            fields[_LIST_PARAMS[name]].extend(values)
        elif name in ("_count", "_offset") and value.isdigit():
            count, offset = (min(int(value), max_count), offset) if name == "_count" else (count, int(value))
        else:
            raise InvalidRequest(f"Parameter '{clip(name, 64)}' is not supported on AuditEvent "
                                 "(date, agent, patient, entity, action, subtype, outcome, address, _count, _offset)")
    return AuditQuery(dates=tuple(dates), count=count, offset=offset,
                      **{key: tuple(values) for key, values in fields.items()})


@router.get("/AuditEvent", summary="Search the audit trail (admin)")
def search_audit(request: Request, _auditor: Auditor) -> Response:
    """AuditEvents, newest first: ``date`` (with prefixes), ``agent`` (client id), ``patient``,
    ``entity`` (``Type/id``), ``action``, ``subtype``, ``outcome``, ``address``; ``_count``, ``_offset``."""
    settings = request.app.state.settings
    database = request.app.state.database
    database.audit.flush()
    query = audit_query(list(request.query_params.multi_items()), settings.max_page_size)
    events, total = database.audit.search(query)
    base = base_url_of(request, settings)
    link = [{"relation": "self", "url": f"{base}/AuditEvent?{request.url.query}"}]
    if query.offset + query.count < total:
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
        following = urlencode([*rest, ("_offset", str(query.offset + query.count))], safe=",:|/")
        link.append({"relation": "next", "url": f"{base}/AuditEvent?{following}"})
    head = jsonio.dumps({"resourceType": "Bundle", "type": "searchset", "total": total, "link": link})
    entries = b",".join(
        f'{{"fullUrl":"{base}/AuditEvent/{event_id}","resource":'.encode() + content + b',"search":{"mode":"match"}}'
        for event_id, content in events
    )
    body = head[:-1] + b',"entry":[' + entries + b"]}" if events else head
    return Response(body, media_type=response_media_type(request))


@router.get("/AuditEvent/{event_id}", summary="Read one AuditEvent (admin)")
def read_audit(request: Request, event_id: str, _auditor: Auditor) -> Response:
    """One AuditEvent."""
    database = request.app.state.database
    require_id(event_id)  # as every FHIR read: a malformed id is 400 (and a NUL never reaches the database)
    database.audit.flush()
    content = database.audit.read(event_id)
    if content is None:
        raise NotFound(f"AuditEvent/{clip(event_id, 64)} is not known")
    return Response(content, media_type=response_media_type(request))
