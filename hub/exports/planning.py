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
    """The types in export order with their ``_typeFilter`` criteria, and a group-level export's members."""

    request: ExportRequest
    types: tuple[str, ...]
    #: Per type, the criteria of each of its ``_typeFilter``s (alternatives).
    filters: tuple[tuple[str, tuple[tuple[Criterion, ...], ...]], ...] = ()
    membership: Membership | None = None

    def criteria(self, resource_type: str, member_set: str, *, few_members: bool = False) -> tuple[Criterion, ...]:
        """What a resource of ``resource_type`` must match to be exported; a group-level export's members are
        the set the store holds as ``member_set`` (``few_members``: small enough to look up their references)."""
        criteria = list(level_criteria(self.request.level, resource_type, member_set, few_members=few_members))
        if self.request.since is not None:
            criteria.append(since_criterion(self.request.since))
        alternatives = dict(self.filters).get(resource_type)
        chosen = filters_criterion(alternatives) if alternatives else None
        if chosen is not None:
            criteria.append(chosen)
        return tuple(criteria)


def plan_export(service: FhirService, database: Database, request: ExportRequest) -> ExportPlan:
    """The plan of ``request`` for the service's principal (403 for a type it may not read, 404 for an
    unknown Group, 400 for a ``_typeFilter`` that is not a valid search)."""
    membership = _membership(service, database, request) if request.level == "group" else None
    filters: dict[str, list[tuple[Criterion, ...]]] = {}
    for resource_type, query in request.type_filters:
        spec = service.filter_spec(resource_type, query, purpose="_typeFilter")
        filters.setdefault(resource_type, []).append(spec.criteria)
    return ExportPlan(request, export_types(request, service.access),
                      tuple((t, tuple(alternatives)) for t, alternatives in filters.items()), membership)


def _membership(service: FhirService, database: Database, request: ExportRequest) -> Membership:
    assert request.group_id is not None
    try:
        group = service.read("Group", request.group_id).resource
    except Gone:
        raise NotFound(f"Group/{request.group_id} was deleted") from None
    assert group is not None and group.content is not None
    return group_membership(jsonio.loads_stored(group.content), lambda org: database.reach(frozenset({org}))[0])
