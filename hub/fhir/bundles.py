"""History Bundles (and the Bundle skeleton), embedding stored resource bytes as they are."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from hub.fhir.instants import format_instant, now_utc
from hub.fhir.jsonio import Fragment
from hub.fhir.repository import HistorySpec, StoredResource

_STATUS_OF_METHOD = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def _link(base_url: str, path: str, params: list[tuple[str, str]], offset: int) -> str:
    query = list(params) + ([("_offset", str(offset))] if offset else [])
    return f"{base_url}/{path}" + (f"?{urlencode(query)}" if query else "")


def _paging_links(
    base_url: str, path: str, params: list[tuple[str, str]], offset: int, count: int, returned: int, total: int | None
) -> list[dict[str, str]]:
    links = [{"relation": "self", "url": _link(base_url, path, params, offset)}]
    more = returned >= count > 0 if total is None else offset + returned < total
    if count > 0 and more:
        links.append({"relation": "next", "url": _link(base_url, path, params, offset + count)})
    if offset > 0 and count > 0:
        links.append({"relation": "previous", "url": _link(base_url, path, params, max(0, offset - count))})
    return links


def bundle_skeleton(kind: str) -> dict[str, Any]:
    """An empty Bundle of ``kind`` with a fresh id and ``meta.lastUpdated``."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(now_utc())},
        "type": kind,
    }


def history_bundle(
    versions: list[StoredResource],
    total: int,
    spec: HistorySpec,
    params: list[tuple[str, str]],
    path: str,
    base_url: str,
) -> dict[str, Any]:
    """A ``history`` Bundle, newest version first; deletions carry no resource."""
    bundle = bundle_skeleton("history")
    bundle["total"] = total
    bundle["link"] = _paging_links(base_url, path, params, spec.offset, spec.count, len(versions), total)
    entries = []
    for version in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{version.resource_type}/{version.id}"}
        if version.content is not None:
            entry["resource"] = Fragment(version.content)
        url = version.resource_type if version.method == "POST" else f"{version.resource_type}/{version.id}"
        entry["request"] = {"method": version.method, "url": url}
        entry["response"] = {
            "status": _STATUS_OF_METHOD.get(version.method, "200 OK"),
            "etag": f'W/"{version.version_id}"',
            "lastModified": format_instant(version.last_updated),
        }
        entries.append(entry)
    if entries:
        bundle["entry"] = entries
    return bundle
