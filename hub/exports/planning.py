"""What one export reads: for each type, the search criteria its resources must match.

Planned at kick-off (so a bad ``_typeFilter`` or an unknown Group is refused at once, with
an OperationOutcome) and again when the job runs (a Group's members are taken then).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import Gone, NotFound
from hub.fhir import jsonio
from hub.fhir.bulk import (
    ExportRequest,
    Membership,
    export_types,
    filters_criterion,
    group_membership,
    level_criteria,
    since_criterion,
)
from hub.fhir.criteria import Criterion
from hub.fhir.service import FhirService
from hub.store.database import Database


@dataclass(frozen=True)
class ExportPlan:
    """The types in export order, each with its criteria, and Group members that were left out."""

    types: tuple[tuple[str, tuple[Criterion, ...]], ...]
    ignored_members: tuple[str, ...] = ()


def plan_export(service: FhirService, database: Database, request: ExportRequest) -> ExportPlan:
    """The plan of ``request`` for the service's principal (403 for a type it may not read, 404 for an
    unknown Group, 400 for a ``_typeFilter`` that is not a valid search)."""
    membership = _membership(service, database, request) if request.level == "group" else None
    filters: dict[str, list[tuple[Criterion, ...]]] = {}
    for resource_type, query in request.type_filters:
        spec = service.filter_spec(resource_type, query, purpose="_typeFilter")
        filters.setdefault(resource_type, []).append(spec.criteria)
    plan = []
    for resource_type in export_types(request, service.access):
        criteria = list(level_criteria(request.level, resource_type, membership))
        if request.since is not None:
            criteria.append(since_criterion(request.since))
        if resource_type in filters:
            criteria.append(filters_criterion(filters[resource_type]))
        plan.append((resource_type, tuple(criteria)))
    return ExportPlan(tuple(plan), membership.ignored if membership else ())


def _membership(service: FhirService, database: Database, request: ExportRequest) -> Membership:
    assert request.group_id is not None
    try:
        group = service.read("Group", request.group_id).resource
    except Gone:
        raise NotFound(f"Group/{request.group_id} was deleted") from None
    assert group is not None and group.content is not None
    return group_membership(jsonio.loads_stored(group.content), lambda org: database.reach(frozenset({org}))[0])
