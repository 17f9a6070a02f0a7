"""Marks the hub puts on resources as they are written (a tag computed from rules the hub holds).

A :class:`ResourceMarker` sees every version before it is stored and returns the resource with
its marks set or cleared (``检查检验结果互认``'s HR tag, for one). Marks are the hub's: a marker
removes a mark the writer sent that the rules do not give. Markers are injected by the layer
that owns the rules; the FHIR service only calls them.
"""

from __future__ import annotations

from typing import Any, Protocol


class ResourceMarker(Protocol):
    """Sets the hub's marks on a resource about to be written."""

    def mark(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` with its marks as the rules give them (a copy when they change; never mutated)."""


def with_tag(resource: dict[str, Any], system: str, tag: dict[str, Any] | None) -> dict[str, Any]:
    """``resource`` with its ``meta.tag`` of ``system`` replaced by ``tag`` (removed when None).

    The same object is returned when nothing changes.
    """
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    current = [t for t in tags or () if isinstance(t, dict) and t.get("system") == system]
    if (tag is None and not current) or (tag is not None and current == [tag]):
        return resource
    kept = [t for t in tags or () if not (isinstance(t, dict) and t.get("system") == system)]
    if tag is not None:
        kept.append(tag)
    new_meta = {k: v for k, v in (meta or {}).items() if k != "tag"}
    if kept:
        new_meta["tag"] = kept
    out = {k: v for k, v in resource.items() if k != "meta"}
    if new_meta:
        out["meta"] = new_meta
    return out
