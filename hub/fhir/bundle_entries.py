"""Entries of a transaction or batch Bundle, checked and parsed."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from hub.errors import HubError, InvalidRequest, NotSupported
from hub.fhir import jsonio
from hub.fhir.router import FhirRequest, relative_url
from hub.fhir.service import Outcome
from hub.privacy import clip

METHODS = ("DELETE", "POST", "PUT", "PATCH", "GET", "HEAD")
#: Content types of a JSON Patch document (the only patch format the hub applies).
PATCH_CONTENT_TYPES = ("application/json-patch+json",)


@dataclass
class BundleEntry:
    """One request of a Bundle, and what processing it resolved and produced."""

    index: int
    method: str
    url: str
    full_url: str | None
    resource: Any
    if_match: str | None
    if_none_exist: str | None
    #: The resource the entry writes (type, id), once resolved.
    target: tuple[str, str] | None = None
    #: A conditional create's match (an existing resource), or the entry it duplicates.
    existing: Any = None
    same_as: "BundleEntry | None" = None
    outcome: Outcome | None = None

    @property
    def path(self) -> str:
        """The URL without its query."""
        return self.url.split("?", 1)[0]

    @property
    def query(self) -> str:
        """The URL's query (conditional criteria), or ''."""
        return self.url.split("?", 1)[1] if "?" in self.url else ""

    @property
    def where(self) -> str:
        """``Bundle.entry[i]``."""
        return f"Bundle.entry[{self.index}]"

    def located(self, error: HubError) -> HubError:
        """``error`` placed at this entry (expressions and message)."""
        return error.prefixed(f"{self.where}.resource", f"{self.where} ({self.method} {clip(self.url, 80)})", self.where)

    def request(self) -> FhirRequest:
        """The entry as a request for :func:`hub.fhir.router.dispatch`."""
        return FhirRequest(self.method, self.url, self.resource, self.if_match, self.if_none_exist)


def _optional_text(request: dict[str, Any], key: str, where: str) -> str | None:
    value = request.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{where}.request.{key} must be a string", expression=f"{where}.request.{key}")
    return value


def parse_entry(index: int, raw: Any, base_url: str) -> BundleEntry:
    """Check one ``Bundle.entry`` and parse it; raises InvalidRequest naming the element."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object", expression=where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise InvalidRequest(f"{where}.request is required", expression=f"{where}.request")
    method = request.get("method")
    url = request.get("url")
    if method not in METHODS:
        raise InvalidRequest(f"{where}.request.method must be one of {', '.join(METHODS)}",
                             expression=f"{where}.request.method")
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest(f"{where}.request.url is required", expression=f"{where}.request.url")
    try:
        url = relative_url(url.strip(), base_url)
    except HubError as error:
        raise InvalidRequest(f"{where}.request.url: {error.message}", expression=f"{where}.request.url") from None
    path, _, query = url.partition("?")
    segments = [s for s in path.split("/") if s]
    if method in ("PUT", "PATCH", "DELETE") and len(segments) == 2 and query:
        raise InvalidRequest(f"{where}.request.url has both an id and search criteria",
                             expression=f"{where}.request.url")
    resource = raw.get("resource")
    if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict):
        raise InvalidRequest(f"{where}.resource is required for {method}", expression=f"{where}.resource")
    if method == "PATCH":
        resource = _patch_document(resource, where)
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise InvalidRequest(f"{where}.fullUrl must be a string", expression=f"{where}.fullUrl")
    return BundleEntry(
        index, method, url, full_url, resource,
        _optional_text(request, "ifMatch", where), _optional_text(request, "ifNoneExist", where),
    )


def _patch_document(resource: dict[str, Any], where: str) -> Any:
    if resource.get("resourceType") == "Parameters":
        raise NotSupported("FHIRPath Patch (Parameters) is not supported; send a JSON Patch as a Binary",
                           expression=f"{where}.resource")
    if resource.get("resourceType") != "Binary" or resource.get("contentType") not in PATCH_CONTENT_TYPES:
        raise InvalidRequest("A PATCH entry needs a Binary with contentType application/json-patch+json",
                             expression=f"{where}.resource")
    data = resource.get("data")
    if not isinstance(data, str):
        raise InvalidRequest("The PATCH entry's Binary.data must be base64 text", expression=f"{where}.resource.data")
    try:
        return jsonio.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise InvalidRequest("The PATCH entry's Binary.data is not base64 JSON",
                             expression=f"{where}.resource.data") from None
