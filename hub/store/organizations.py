"""The institutional tree: which institutions a consortium (or region, or zone) reaches; an Organization's
kind, role, level and parent as the roster codes them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hub.fhir.criteria import ReferenceCriterion, ReferenceValue
from hub.fhir.repository import FhirRepository, SearchSpec
from hub.store.type_cache import TypeCache

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


@dataclass(frozen=True)
class Institution:
    """An Organization of the roster as the consortium's services need it."""

    org_id: str
    name: str
    kind: str
    level: str
    parent: str


def ancestor(nodes: Mapping[str, Institution], org_id: str | None, kind: str) -> str | None:
    """The nearest Organization of ``kind`` (institution, consortium, region…) at or above ``org_id`` (None when
    the chain leaves the roster or is deeper than :data:`MAX_DEPTH` + 2)."""
    for _ in range(MAX_DEPTH + 2):
        node = nodes.get(org_id or "")
        if node is None:
            return None
        if node.kind == kind:
            return node.org_id
        org_id = node.parent
    return None


@dataclass(frozen=True)
class InstitutionTree:
    """The institutional tree: every Organization by id, with its kind, level and parent."""

    nodes: Mapping[str, Institution]

    def ancestor(self, org_id: str | None, kind: str) -> str | None:
        """See :func:`ancestor`."""
        return ancestor(self.nodes, org_id, kind)

    def level(self, org_id: str) -> str:
        """The institution's level (tertiary, secondary, primary, chc, township; '' unknown)."""
        node = self.nodes.get(org_id)
        return node.level if node else ""


def load_tree(repository: FhirRepository) -> InstitutionTree:
    """The tree as stored now."""
    nodes = {}
    for stored in repository.search(SearchSpec("Organization", (), count=100_000)):
        if stored.content:
            fields = summary(orjson.loads(stored.content))
            nodes[fields["id"]] = Institution(fields["id"], fields["name"], fields["kind"], fields["level"],
                                              fields["parent"])
    return InstitutionTree(nodes)


def tree_cache() -> TypeCache[InstitutionTree]:
    """The institutional tree of one database, read again when an Organization changed (in any process)."""
    return TypeCache("Organization", load_tree, InstitutionTree({}))
