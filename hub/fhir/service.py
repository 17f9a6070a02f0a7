"""FHIR RESTful interactions on top of a :class:`FhirRepository`.

A request's meaning in, an :class:`Outcome` out: no HTTP framework and no SQL here.
Conditional create/update/delete are written once, on top of search.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import jsonpatch
import jsonpointer

from hub.errors import (
    BusinessRuleViolation,
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    MultipleMatches,
    NotFound,
    VersionConflict,
)
from hub.fhir import jsonio
from hub.fhir.access import Access, nested_types, owner_in
from hub.fhir.indexing import extract_index
from hub.fhir.instants import format_instant, now_utc
from hub.fhir.marking import ResourceMarker
from hub.fhir.preconditions import IfMatch, parse_if_match
from hub.fhir.protected import PersonalDataProtector
from hub.fhir.reads import Outcome, ReadInteractions
from hub.fhir.repository import (
    FhirRepository,
    IndexValues,
    SearchSpec,
    StoredResource,
    VersionWrite,
)
from hub.fhir.resource_types import require_id, require_type
from hub.fhir.search import parse_conditional, parse_filter
from hub.fhir.search_params import SearchParameters, SearchRegistry
from hub.fhir.subscriptions import check_subscription, with_subscriber
from hub.fhir.validation import validate_resource
from hub.privacy import TOKEN_PREFIX, clip, mask_text

_RETRIES = 5
_PATIENT_REFERENCE = re.compile(rb'"reference":"Patient/([A-Za-z0-9\-.]{1,64})"')
T = TypeVar("T")


def with_meta(resource: dict[str, Any], resource_id: str, version_id: int, last_updated: datetime) -> dict[str, Any]:
    """A copy of ``resource`` with the server's id, ``meta.versionId`` and ``meta.lastUpdated``."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = format_instant(last_updated)
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": resource_id, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def _without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return {k: v for k, v in resource.items() if k != "id"}
    rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k not in ("meta", "id")}
    if rest:
        out["meta"] = rest
    return out


class FhirService(ReadInteractions):
    """The FHIR interactions of one unit of work (reads and searches in :class:`ReadInteractions`)."""

    def __init__(
        self,
        repository: FhirRepository,
        *,
        default_page_size: int = 20,
        max_page_size: int = 1000,
        search_parameters: SearchParameters | None = None,
        access: Access | None = None,
        protector: PersonalDataProtector | None = None,
        markers: Sequence[ResourceMarker] = (),
    ) -> None:
        self.repository = repository
        #: Set the hub's marks (the 互认 HR tag…) on every version written.
        self.markers = tuple(markers)
        #: What the principal may do (every interaction checks it; the repository filters by it).
        self.access = access or Access.unrestricted()
        #: Blinds ID and phone numbers for the search index and in searched values.
        self.protector = protector
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self.search_parameters = search_parameters or SearchParameters()
        #: Set for a transaction: every version it writes carries the same lastUpdated.
        self.fixed_now: datetime | None = None

    def marked(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` (already stamped with its owner) with the hub's marks as its markers give them."""
        for marker in self.markers:
            resource = marker.mark(resource_type, resource)
        return resource

    def now(self) -> datetime:
        """The lastUpdated of the versions written now (one instant for a whole transaction)."""
        return self.fixed_now or now_utc()

    @property
    def registry(self) -> SearchRegistry:
        """The search parameters in force (official R4 plus stored custom ones)."""
        return self.search_parameters.current(self.repository)

    # -- writes ------------------------------------------------------------

    def new_id(self) -> str:
        """A new server-assigned id (a UUID)."""
        return str(uuid.uuid4())

    def prepare_create(self, resource_type: str, body: Any, resource_id: str | None = None) -> VersionWrite:
        """Validate ``body`` and build its first version under a server-assigned id.

        ``resource_id`` passes an id already assigned with :meth:`new_id` (transactions
        assign ids before they resolve references).
        """
        require_type(resource_type)
        resource = validate_resource(body, resource_type)
        assigned = resource_id or self.new_id()
        return self._version(resource, resource_type, assigned, 1, "POST", 0, may_conflict=False)

    def conditional_spec(self, resource_type: str, criteria: str) -> SearchSpec:
        """The search behind conditional ``criteria`` (``identifier=…``) on ``resource_type``."""
        require_type(resource_type)
        self.access.require(resource_type, "s")
        return self._searchable(parse_conditional(resource_type, criteria, self.registry, max_count=self.max_page_size))

    def filter_spec(self, resource_type: str, query: str, *, purpose: str) -> SearchSpec:
        """The search behind a filter query on ``resource_type`` (``Subscription.criteria``, an export's
        ``_typeFilter``): no criteria matches every resource; paging and sorting are refused."""
        require_type(resource_type)
        self.access.require(resource_type, "s")
        criteria = parse_filter(resource_type, query, self.registry, purpose=purpose)
        return self._searchable(SearchSpec(resource_type, criteria))

    def _searchable(self, spec: SearchSpec) -> SearchSpec:
        """``spec`` with searched ID and phone numbers blinded, once the principal may search every type
        its chains and ``_has`` reach."""
        spec = self._blinded(spec)
        for nested in sorted(nested_types(spec.criteria)):
            self.access.require(nested, "s")
        return spec

    def find_matches(self, spec: SearchSpec, *, for_write: bool = False, limit: int = 2) -> list[StoredResource]:
        """Up to ``limit`` current resources matching a conditional ``spec``.

        ``for_write`` (conditional create/update) first locks the criteria until the unit
        of work ends, so two concurrent conditional creates cannot both create.
        """
        if for_write:
            self.lock_criteria([spec])
        return self.repository.search(replace(spec, count=limit))

    def lock_criteria(self, specs: list[SearchSpec]) -> None:
        """Serialize conditional writes on these criteria with other units of work until this one ends."""
        self.repository.lock([f"{spec.resource_type}?{canonical_criteria(spec)}" for spec in specs])

    def find_existing(self, resource_type: str, criteria: str, *, for_write: bool = False) -> StoredResource | None:
        """The one resource matching conditional ``criteria``; None if none; 412 if several."""
        matches = self.find_matches(self.conditional_spec(resource_type, criteria), for_write=for_write)
        return single_match(matches, resource_type, criteria)

    def create(self, resource_type: str, body: Any, *, if_none_exist: str | None = None) -> Outcome:
        """``POST [type]``; with ``If-None-Exist``, returns the match instead of creating."""
        self.access.require(resource_type, "c")
        write = self.prepare_create(resource_type, body)
        if if_none_exist:
            existing = self.find_existing(resource_type, if_none_exist, for_write=True)
            if existing is not None:
                return Outcome(200, existing, message=f"{resource_type}/{existing.id} already exists; nothing created")
        self.repository.write(write)
        return Outcome(201, write.new)

    def update(
        self, resource_type: str, resource_id: str, body: Any, *, if_match: str | None = None
    ) -> Outcome:
        """``PUT [type]/[id]``: update, or create with the client's id; unchanged content makes no version."""
        resource = self._validated_put(resource_type, resource_id, body)
        return self._update_validated(resource_type, resource_id, resource, if_match)

    def upsert_many(self, resources: Sequence[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """Write resources the hub built itself under their own ids, in one round of reads and writes.

        For each: ``created``, ``updated`` (a new version) or ``unchanged`` (same content as the
        current version: no new version). The caller validated the templates; ids repeated in
        ``resources`` keep the last one. Raises VersionConflict when a concurrent writer won.
        """
        last = {(t, i): n for n, (t, i, _r) in enumerate(resources)}
        current = self.repository.read_current_many(list(last))
        writes: list[VersionWrite] = []
        outcomes: list[str] = []
        for number, (resource_type, resource_id, resource) in enumerate(resources):
            if last[(resource_type, resource_id)] != number:
                outcomes.append("unchanged")
                continue
            existing = current.get((resource_type, resource_id))
            live = existing is not None and not existing.deleted and existing.content is not None
            if live and existing is not None and existing.content is not None:  # stamped and marked to compare
                if not self.access.may_change(existing):
                    raise Forbidden(f"{resource_type}/{resource_id} belongs to another institution")
                stored = _without_server_meta(jsonio.loads_stored(existing.content))
                resource = self.marked(resource_type, self.access.stamp(resource))
                if jsonio.canonical(stored) == jsonio.canonical(_without_server_meta(resource)):
                    outcomes.append("unchanged")
                    continue
            previous = existing.version_id if existing is not None else 0
            writes.append(self._version(resource, resource_type, resource_id, previous + 1, "PUT", previous,
                                        hub_assigned_id=True, prepared=live))
            outcomes.append("updated" if live else "created")
        if writes:
            self.repository.write_many(writes)
        return outcomes

    def prepare_put_create(self, resource_type: str, resource_id: str, body: Any) -> VersionWrite:
        """The first version written by ``PUT [type]/[id]`` of a resource that does not exist (bulk loads)."""
        resource = self._validated_put(resource_type, resource_id, body)
        return self._version(resource, resource_type, resource_id, 1, "PUT", 0)

    def _validated_put(self, resource_type: str, resource_id: str, body: Any) -> dict[str, Any]:
        require_type(resource_type)
        require_id(resource_id)
        resource = validate_resource(body, resource_type)
        body_id = resource.get("id")
        if body_id is None:
            raise InvalidRequest("The resource in an update must have an id", expression=f"{resource_type}.id")
        if body_id != resource_id:
            raise InvalidRequest(
                f"The resource id '{clip(str(body_id), 64)}' does not match the URL id '{resource_id}'",
                expression=f"{resource_type}.id",
            )
        return resource

    def conditional_update(
        self, resource_type: str, criteria: str, body: Any, *, if_match: str | None = None
    ) -> Outcome:
        """``PUT [type]?criteria``: 0 matches create, 1 updates it, several is 412."""
        require_type(resource_type)
        self.access.require(resource_type, "u")
        resource = validate_resource(body, resource_type)
        existing = self.find_existing(resource_type, criteria, for_write=True)
        target_id = self.update_target(resource_type, criteria, resource, existing.id if existing else None)
        return self._update_validated(resource_type, target_id, {**resource, "id": target_id}, if_match)

    def update_target(
        self, resource_type: str, criteria: str, resource: dict[str, Any], match_id: str | None
    ) -> str:
        """The id a conditional update writes to, given the id its criteria matched.

        One match: its id (the body's id, if any, must agree). No match: the body's id
        (refused if that resource exists but does not match) or a new server id.
        """
        body_id = resource.get("id")
        if body_id is not None and not isinstance(body_id, str):
            raise InvalidRequest("The resource id must be a string", expression=f"{resource_type}.id")
        if match_id is not None:
            if body_id is not None and body_id != match_id:
                raise InvalidRequest(
                    f"The resource id '{clip(body_id, 64)}' does not match {resource_type}/{match_id} "
                    "found by the criteria",
                    expression=f"{resource_type}.id",
                )
            return match_id
        if body_id is None:
            return self.new_id()
        current = self._current(resource_type, body_id)
        if current is not None and not current.deleted:
            raise Conflict(f"{resource_type}/{body_id} exists but does not match the criteria '{clip(criteria, 120)}'")
        return body_id

    def patch(
        self, resource_type: str, resource_id: str, operations: Any, *, if_match: str | None = None
    ) -> Outcome:
        """``PATCH [type]/[id]`` with a JSON Patch document."""
        require_type(resource_type)
        self.access.require(resource_type, "u")
        require_id(resource_id)
        patch = _json_patch(operations)
        precondition = parse_if_match(if_match)
        return self._write_with_retry(
            resource_type, resource_id, lambda current: self._patched(resource_type, resource_id, patch, current),
            precondition, "PATCH", must_exist=True,
        )

    def preview_patch(self, resource_type: str, resource_id: str, operations: Any) -> dict[str, Any]:
        """The validated result of patching the current version (nothing is written)."""
        require_type(resource_type)
        patch = _json_patch(operations)
        return self._patched(resource_type, resource_id, patch, self._current(resource_type, resource_id))

    def _patched(
        self, resource_type: str, resource_id: str, patch: jsonpatch.JsonPatch, current: StoredResource | None
    ) -> dict[str, Any]:
        if current is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        if current.deleted:
            raise Gone(f"{resource_type}/{resource_id} was deleted (version {current.version_id})")
        document = jsonio.loads_stored(current.content or b"{}")
        try:
            patched = patch.apply(document)
        except jsonpatch.JsonPatchTestFailed:  # its message quotes the stored value: never echo it
            raise BusinessRuleViolation("The patch cannot be applied: a 'test' operation failed") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise BusinessRuleViolation(f"The patch cannot be applied: {clip(str(exc), 200)}") from None
        if not isinstance(patched, dict) or patched.get("resourceType") != resource_type:
            raise BusinessRuleViolation("A patch may not change the resourceType")
        if patched.get("id") != resource_id:
            raise BusinessRuleViolation("A patch may not change the resource id")
        return validate_resource(patched, resource_type)

    def conditional_patch(
        self, resource_type: str, criteria: str, operations: Any, *, if_match: str | None = None
    ) -> Outcome:
        """``PATCH [type]?criteria``: 0 matches 404, several 412."""
        require_type(resource_type)
        self.access.require(resource_type, "u")
        existing = self.find_existing(resource_type, criteria)
        if existing is None:
            raise NotFound(f"No {resource_type} matches '{clip(criteria, 120)}'")
        return self.patch(resource_type, existing.id, operations, if_match=if_match)

    def delete(self, resource_type: str, resource_id: str, *, if_match: str | None = None) -> Outcome:
        """``DELETE [type]/[id]``: a deletion version is kept in the history."""
        require_type(resource_type)
        require_id(resource_id)
        self.access.require(resource_type, "d")
        label = f"{resource_type}/{resource_id}"

        def plan(current: StoredResource | None) -> Outcome | tuple[VersionWrite, Outcome]:
            if current is None:
                return Outcome(200, message=f"{label} does not exist; nothing deleted")
            if current.deleted:
                return Outcome(200, message=f"{label} was already deleted")
            version = current.version_id + 1
            tombstone = StoredResource(resource_type, resource_id, version, self.now(), True, None, "DELETE")
            return VersionWrite(tombstone, current.version_id), Outcome(
                200, tombstone, message=f"Deleted {label} (version {version})"
            )

        return self._compare_and_swap(resource_type, resource_id, parse_if_match(if_match), plan)

    def conditional_delete(self, resource_type: str, criteria: str) -> Outcome:
        """``DELETE [type]?criteria``: 0 matches is a no-op, 1 is deleted, several 412."""
        require_type(resource_type)
        self.access.require(resource_type, "d")
        existing = self.find_existing(resource_type, criteria)
        if existing is None:
            return Outcome(200, message=f"No {resource_type} matches the criteria; nothing deleted")
        return self.delete(resource_type, existing.id)

    # -- internals -----------------------------------------------------------

    def _version(
        self,
        resource: dict[str, Any],
        resource_type: str,
        resource_id: str,
        version_id: int,
        method: str,
        previous: int,
        *,
        may_conflict: bool = True,
        hub_assigned_id: bool = False,
        prepared: bool = False,
    ) -> VersionWrite:
        """The next version of ``resource`` (``prepared``: already stamped with its owner and marked)."""
        self.access.require(resource_type, "c" if method == "POST" else "u")
        if method != "POST" and not hub_assigned_id and mask_text(resource_id) != resource_id:  # a client-chosen id
            raise InvalidRequest(
                "A resource id must not be an ID or phone number (personal data is never stored in plain text); "
                "use the hospital's record number or let the hub assign the id",
                expression=f"{resource_type}.id",
            )
        if resource_type == "Subscription":
            resource = self._checked_subscription(resource)
        if not prepared:
            resource = self.marked(resource_type, self.access.stamp(resource))  # marks may read the owner's tag
        last_updated = self.now()
        document = with_meta(resource, resource_id, version_id, last_updated)
        content = jsonio.dumps(document)
        self._refuse_hidden_patients(resource_type, content)
        if TOKEN_PREFIX.encode() in content:
            raise InvalidRequest(f"Values starting with '{TOKEN_PREFIX}' are reserved for the hub's encrypted data")
        stored = StoredResource(resource_type, resource_id, version_id, last_updated, False, content, method)
        if resource_type == "SearchParameter":
            self.search_parameters.invalidate()
        return VersionWrite(stored, previous, self.index_values(document, content), may_conflict)

    def _checked_subscription(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A Subscription the hub can serve, tagged with the client that owns it (notifications carry
        only what it may read); its criteria must be a search this writer may run.

        The hub's own writes (status changes) are taken as they are (the matcher and the sender check
        what they use); an administrator editing a client's Subscription keeps that client its owner.
        """
        if self.access.principal == Access.unrestricted().principal:
            return resource
        watched, query = check_subscription(resource)
        self.filter_spec(watched, query, purpose="Subscription.criteria")
        owner = owner_in(resource) if self.access.manages_all else None
        return with_subscriber(resource, owner or self.access.principal)

    def _refuse_hidden_patients(self, resource_type: str, content: bytes) -> None:
        """An institution-bound writer may not attach data to another institution's patient."""
        if not self.access.bound(resource_type):
            return
        for patient_id in sorted(set(_PATIENT_REFERENCE.findall(content))):
            if self.repository.hidden("Patient", patient_id.decode()):
                raise Forbidden(f"Patient/{patient_id.decode()} belongs to another institution; "
                                "refer to your own institution's record of the patient")

    def index_values(self, document: dict[str, Any], content: bytes | None = None) -> IndexValues:
        """The search values of a resource (ID and phone numbers blinded); ``content``, its JSON if at
        hand, lets a resource with nothing protected skip the blinding walk."""
        protector = self.protector
        blind = protector is not None and (content is None or protector.may_hold(content))
        return extract_index(protector.blinded(document) if blind else document, self.registry)  # type: ignore[union-attr]

    def _update_validated(
        self, resource_type: str, resource_id: str, resource: dict[str, Any], if_match: str | None
    ) -> Outcome:
        precondition = parse_if_match(if_match)
        return self._write_with_retry(resource_type, resource_id, lambda _current: resource, precondition, "PUT")

    def _write_with_retry(
        self,
        resource_type: str,
        resource_id: str,
        build: Callable[[StoredResource | None], dict[str, Any]],
        precondition: IfMatch | None,
        method: str,
        *,
        must_exist: bool = False,
    ) -> Outcome:
        """Write ``build(current)`` as the next version, unless its content is unchanged."""

        def plan(current: StoredResource | None) -> Outcome | tuple[VersionWrite, Outcome]:
            resource = build(current)
            live = current is not None and not current.deleted
            compared = live and current is not None and current.content is not None
            if compared and current is not None and current.content is not None:
                stored = _without_server_meta(jsonio.loads_stored(current.content))
                resource = self.marked(resource_type, self.access.stamp(resource))
                if jsonio.canonical(stored) == jsonio.canonical(_without_server_meta(resource)):
                    return Outcome(200, current, message="No change; the current version is kept")
            previous = current.version_id if current is not None else 0
            write = self._version(resource, resource_type, resource_id, previous + 1, method, previous,
                                  prepared=compared)
            return write, Outcome(200 if live or must_exist else 201, write.new)

        return self._compare_and_swap(resource_type, resource_id, precondition, plan)

    def _compare_and_swap(
        self,
        resource_type: str,
        resource_id: str,
        precondition: IfMatch | None,
        plan: Callable[[StoredResource | None], Outcome | tuple[VersionWrite, Outcome]],
    ) -> Outcome:
        """Read the current version, check ``If-Match``, write what ``plan`` decides.

        A concurrent writer makes the store refuse the version; without ``If-Match`` the
        whole read-plan-write is retried, with it the client gets 412.
        """
        label = f"{resource_type}/{resource_id}"
        for _attempt in range(_RETRIES):
            current = self.repository.read_current(resource_type, resource_id)
            if current is not None and not self.access.may_change(current):
                raise Forbidden(f"{label} belongs to an institution this client may read but not change")
            if precondition is not None:
                precondition.check(label, current)
            planned = plan(current)
            if isinstance(planned, Outcome):
                return planned
            write, outcome = planned
            try:
                self.repository.write(write)
            except VersionConflict:
                if precondition is not None:
                    raise precondition.lost_race(label) from None
                continue
            return outcome
        raise Conflict(f"{label} is being changed concurrently; try again")

def _json_patch(operations: Any) -> jsonpatch.JsonPatch:
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise InvalidRequest("A JSON Patch body must be an array of operation objects")
    try:
        return jsonpatch.JsonPatch(operations)
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException, TypeError) as exc:
        raise InvalidRequest(f"Invalid JSON Patch: {clip(str(exc), 200)}") from None


def single_match(matches: list[T], resource_type: str, criteria: str) -> T | None:
    """The FHIR conditional rule: no match → None, one → it, several → 412."""
    if len(matches) > 1:
        raise MultipleMatches(f"The criteria '{clip(criteria, 120)}' match more than one {resource_type}")
    return matches[0] if matches else None


def canonical_criteria(spec: SearchSpec) -> str:
    """One string per distinct set of criteria, whatever their order."""
    return "&".join(sorted(repr(c) for c in spec.criteria))
