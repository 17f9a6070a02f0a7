"""``POST [base]`` with a ``transaction`` or ``batch`` Bundle.

A transaction is all-or-nothing: entries are processed in the order the spec sets
(DELETE, POST, PUT/PATCH, GET), ``urn:uuid:`` and conditional references are resolved
first, and any failing entry raises, so the caller's unit of work rolls everything back.
A batch runs each entry on its own (in a savepoint) and reports each entry's status.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from hub.errors import HubError, InvalidRequest, MultipleMatches, NotSupported
from hub.fhir import jsonio
from hub.fhir.outcome import from_error
from hub.fhir.references import iter_references
from hub.fhir.repository import VersionWrite
from hub.fhir.response import entry_response, status_line
from hub.fhir.router import FhirRequest, dispatch, relative_url
from hub.fhir.service import FhirService, Outcome

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_PATCH_TYPES = ("application/json-patch+json",)


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    full_url: str | None
    resource: Any
    if_match: str | None
    if_none_exist: str | None
    #: Resolved target of a write: (type, id), and whether the id is new.
    target: tuple[str, str] | None = None
    existing: Any = None
    outcome: Outcome | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    def located(self, error: HubError) -> HubError:
        return error.prefixed(f"{self.where}.resource", f"{self.where} ({self.method} {self.url[:80]})")


def process_bundle(service: FhirService, body: Any, base_url: str, prefer: str) -> dict[str, Any]:
    """Run a transaction or batch Bundle and return its response Bundle."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the server base needs a Bundle of type transaction or batch")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(
            f"Bundle type '{str(kind)[:30]}' cannot be processed; use transaction or batch", expression="Bundle.type"
        )
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
    if kind == "batch":
        return _batch(service, raw_entries, base_url, prefer)
    entries = [_parse_entry(i, raw, base_url) for i, raw in enumerate(raw_entries)]
    return _transaction(service, entries, base_url, prefer)


def _parse_entry(index: int, raw: Any, base_url: str) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object", expression=where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidRequest(f"{where}.request is required", expression=f"{where}.request")
    method = request.get("method")
    url = request.get("url")
    if method not in _ORDER:
        raise InvalidRequest(f"{where}.request.method must be GET, HEAD, POST, PUT, PATCH or DELETE",
                             expression=f"{where}.request.method")
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.request.url is required", expression=f"{where}.request.url")
    resource = raw.get("resource")
    if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict):
        raise InvalidRequest(f"{where}.resource is required for {method}", expression=f"{where}.resource")
    if method == "PATCH":
        resource = _patch_document(resource, where)
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    return _Entry(
        index,
        method,
        relative_url(url, base_url) if "://" in url else url.lstrip("/"),
        full_url,
        resource,
        request.get("ifMatch"),
        request.get("ifNoneExist"),
    )


def _patch_document(resource: dict[str, Any], where: str) -> Any:
    if resource.get("resourceType") == "Parameters":
        raise NotSupported("FHIRPath Patch (Parameters) is not supported; send a JSON Patch as a Binary",
                           expression=f"{where}.resource")
    if resource.get("resourceType") != "Binary" or resource.get("contentType") not in _PATCH_TYPES:
        raise InvalidRequest("A PATCH entry needs a Binary with contentType application/json-patch+json",
                             expression=f"{where}.resource")
    try:
        return jsonio.loads(base64.b64decode(resource.get("data") or "", validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest("The PATCH entry's Binary.data is not base64 JSON", expression=f"{where}.resource.data") from None


# -- batch -------------------------------------------------------------------

def _batch(service: FhirService, raw_entries: list[Any], base_url: str, prefer: str) -> dict[str, Any]:
    out = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw, base_url)
            with service.repository.savepoint():
                outcome = dispatch(service, _request(entry), base_url)
            out.append(entry_response(outcome, prefer, include_resource=entry.method in ("GET", "HEAD")))
        except HubError as error:
            out.append({"response": {"status": status_line(error.status), "outcome": from_error(error)}})
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def _request(entry: _Entry) -> FhirRequest:
    return FhirRequest(entry.method, entry.url, entry.resource, entry.if_match, entry.if_none_exist)


# -- transaction ---------------------------------------------------------------

def _transaction(service: FhirService, entries: list[_Entry], base_url: str, prefer: str) -> dict[str, Any]:
    identities: dict[str, str] = {}
    for entry in entries:
        try:
            _resolve_identity(service, entry, identities, base_url)
        except HubError as error:
            raise entry.located(error) from None
    _check_unique_targets(entries)
    for entry in entries:
        if isinstance(entry.resource, dict) and entry.method in ("POST", "PUT"):
            try:
                _rewrite_references(service, entry.resource, identities)
            except HubError as error:
                raise entry.located(error) from None
    for phase in sorted(set(_ORDER.values())):
        batch = [e for e in entries if _ORDER[e.method] == phase]
        if phase == _ORDER["POST"]:
            _create_all(service, batch)
            continue
        for entry in batch:
            try:
                entry.outcome = dispatch(service, _request(entry), base_url)
            except HubError as error:
                raise entry.located(error) from None
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            entry_response(e.outcome, prefer, include_resource=e.method in ("GET", "HEAD"))
            for e in entries
            if e.outcome is not None
        ],
    }


def _resolve_identity(service: FhirService, entry: _Entry, identities: dict[str, str], base_url: str) -> None:
    path, _, query = entry.url.partition("?")
    parts = [p for p in path.split("/") if p]
    if entry.method == "POST":
        if len(parts) != 1:
            raise InvalidRequest("A POST entry's request.url must be a resource type")
        resource_type = parts[0]
        if entry.if_none_exist:
            entry.existing = service.find_existing(resource_type, entry.if_none_exist, for_write=True)
        if entry.existing is not None:
            entry.target = (resource_type, entry.existing.id)
        else:
            entry.target = (resource_type, service.new_id())
    elif entry.method == "PUT" and len(parts) == 1 and query:
        resource_type = parts[0]
        resource_id = service.resolve_update_target(resource_type, query, entry.resource)
        entry.target = (resource_type, resource_id)
        entry.url = f"{resource_type}/{resource_id}"
        entry.resource = {**entry.resource, "id": resource_id}
    elif entry.method in ("PUT", "PATCH", "DELETE") and len(parts) == 2:
        entry.target = (parts[0], parts[1])
    if entry.full_url and entry.target is not None:
        identities[entry.full_url] = f"{entry.target[0]}/{entry.target[1]}"
        if entry.full_url.startswith(base_url + "/"):
            identities[entry.full_url[len(base_url) + 1:]] = identities[entry.full_url]


def _check_unique_targets(entries: list[_Entry]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for entry in entries:
        if entry.target is None or entry.existing is not None:
            continue
        if entry.target in seen:
            raise InvalidRequest(
                f"Bundle.entry[{entry.index}] and Bundle.entry[{seen[entry.target]}] both change "
                f"{entry.target[0]}/{entry.target[1]}; a transaction may change a resource only once",
                expression=f"Bundle.entry[{entry.index}]",
            )
        seen[entry.target] = entry.index


def _rewrite_references(service: FhirService, resource: dict[str, Any], identities: dict[str, str]) -> None:
    for holder in iter_references(resource):
        reference = holder["reference"]
        if reference in identities:
            holder["reference"] = identities[reference]
        elif reference.startswith(("urn:uuid:", "urn:oid:")):
            raise InvalidRequest(f"Reference '{reference[:80]}' matches no fullUrl in this transaction")
        elif "?" in reference and "/" not in reference.split("?", 1)[0]:
            holder["reference"] = _resolve_conditional_reference(service, reference)


def _resolve_conditional_reference(service: FhirService, reference: str) -> str:
    resource_type, _, query = reference.partition("?")
    try:
        match = service.find_existing(resource_type, query)
    except MultipleMatches:
        raise MultipleMatches(f"Conditional reference '{reference[:120]}' matches more than one resource") from None
    if match is None:
        raise InvalidRequest(f"Conditional reference '{reference[:120]}' matches no resource")
    return f"{resource_type}/{match.id}"


def _create_all(service: FhirService, entries: list[_Entry]) -> None:
    writes: list[VersionWrite] = []
    for entry in entries:
        assert entry.target is not None
        resource_type, resource_id = entry.target
        try:
            if entry.existing is not None:
                entry.outcome = Outcome(200, entry.existing, message=f"{resource_type}/{resource_id} already exists")
                continue
            write = service.prepare_create(resource_type, entry.resource, resource_id)
        except HubError as error:
            raise entry.located(error) from None
        writes.append(write)
        entry.outcome = Outcome(201, write.new)
    if writes:
        service.repository.write_many(writes)
