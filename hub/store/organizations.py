"""The institutional tree: which institutions a consortium (or region, or zone) reaches."""

from __future__ import annotations

from collections.abc import Iterable

from hub.fhir.criteria import ReferenceCriterion, ReferenceValue
from hub.fhir.repository import FhirRepository, SearchSpec

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
