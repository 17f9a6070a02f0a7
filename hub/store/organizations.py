"""The institutional tree: which institutions a consortium (or region, or zone) reaches; an Organization's
kind, role, level and parent as the roster codes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hub.fhir.criteria import ReferenceCriterion, ReferenceValue
from hub.fhir.repository import FhirRepository, SearchSpec

KIND_SYSTEM = "urn:hub:organization-kind"
ROLE_SYSTEM = "urn:hub:consortium-role"
LEVEL_SYSTEM = "urn:hub:institution-level"
#: Region → consortium → zone → institution → department: deeper trees are not followed.
MAX_DEPTH = 8


def institutions_under(repository: FhirRepository, roots: Iterable[str]) -> frozenset[str]:
    """``roots`` and every Organization whose ``partOf`` chain reaches one of them."""
    found = set(roots)
    frontier = sorted(found)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        values = tuple(ReferenceValue("Organization", org_id) for org_id in frontier)
        spec = SearchSpec("Organization", (ReferenceCriterion("partof", values),), count=100_000)
        children = {stored.id for stored in repository.search(spec)} - found
        found |= children
        frontier = sorted(children)
    return frozenset(found)


def parent_of(resource: Mapping[str, Any]) -> str | None:
    """The Organization id an Organization's ``partOf`` names (None if none or not ``Organization/<id>``)."""
    part_of = resource.get("partOf")
    reference = part_of.get("reference") if isinstance(part_of, dict) else None
    if isinstance(reference, str) and reference.startswith("Organization/"):
        return reference[len("Organization/"):]
    return None


def summary(resource: Mapping[str, Any]) -> dict[str, str]:
    """id, name, kind, role, level (codes, '' if absent) and parent of an Organization (for listings)."""
    codes = {system: "" for system in (KIND_SYSTEM, ROLE_SYSTEM, LEVEL_SYSTEM)}
    for concept in resource.get("type") or ():
        for coding in (concept.get("coding") or ()) if isinstance(concept, dict) else ():
            if isinstance(coding, dict) and coding.get("system") in codes and not codes[coding["system"]]:
                codes[coding["system"]] = str(coding.get("code") or "")
    return {"id": str(resource.get("id") or ""), "name": str(resource.get("name") or ""),
            "kind": codes[KIND_SYSTEM], "role": codes[ROLE_SYSTEM], "level": codes[LEVEL_SYSTEM],
            "parent": parent_of(resource) or ""}
