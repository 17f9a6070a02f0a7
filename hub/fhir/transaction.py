"""``POST [base]`` with a ``transaction`` or ``batch`` Bundle.

A transaction is all-or-nothing, processed as R4 sets out (http.html#trules):

1. DELETEs (conditional ones resolved first) run before anything else is resolved, so
   conditional creates and references never land on a resource the bundle deletes;
2. POST, PUT and PATCH targets are resolved — ``If-None-Exist`` and conditional PUT against the
   database *and* the entries already resolved in this bundle, so one bundle never
   creates the same patient twice — and no two entries may change one resource;
3. ``urn:uuid:`` fullUrls and conditional references (``Patient?identifier=…``) in the
   resources are rewritten to the resolved ``Type/id``;
4. POSTs are written (in bulk), then PUT/PATCH, then GETs run.

Any failing entry raises, so the caller's unit of work rolls everything back. A batch
runs each entry on its own (in a savepoint) and reports each entry's status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from hub.errors import HubError, InvalidRequest, Issue, NotFound, PayloadTooLarge, VersionConflict
from hub.fhir.bundle_entries import BundleEntry, parse_entry
from hub.fhir.criteria import IdCriterion, TokenCriterion
from hub.fhir.instants import now_utc
from hub.fhir.outcome import from_error, operation_outcome
from hub.fhir.references import iter_references
from hub.fhir.repository import IndexValues, SearchSpec
from hub.fhir.response import entry_response, status_line
from hub.fhir.router import dispatch
from hub.fhir.search_match import matches_in_memory
from hub.fhir.service import FhirService, Outcome, canonical_criteria, single_match
from hub.privacy import clip

log = logging.getLogger("hub.fhir.transaction")


def process_bundle(
    service: FhirService, body: Any, base_url: str, prefer: str, *, max_entries: int | None = None
) -> dict[str, Any]:
    """Run a transaction or batch Bundle and return its response Bundle (413 past ``max_entries``)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the server base needs a Bundle of type transaction or batch")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(
            f"Bundle type '{clip(str(kind), 30)}' cannot be processed; use transaction or batch", expression="Bundle.type"
        )
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
    if max_entries is not None and len(raw_entries) > max_entries:
        raise PayloadTooLarge(f"The Bundle has {len(raw_entries)} entries; at most {max_entries} are accepted "
                              "in one request (split it)", expression="Bundle.entry")
    if kind == "batch":
        entries = _batch(service, raw_entries, base_url, prefer)
    else:
        service.fixed_now = now_utc()  # a transaction happens at one instant
        entries = _Transaction(service, [parse_entry(i, raw, base_url) for i, raw in enumerate(raw_entries)],
                               base_url, prefer).run()
    response: dict[str, Any] = {"resourceType": "Bundle", "type": f"{kind}-response"}
    if entries:
        response["entry"] = entries
    return response


# -- batch -------------------------------------------------------------------

def _batch(service: FhirService, raw_entries: list[Any], base_url: str, prefer: str) -> list[dict[str, Any]]:
    out = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = parse_entry(index, raw, base_url)
            with service.repository.savepoint():
                outcome = dispatch(service, entry.request(), base_url)
            out.append(entry_response(outcome, prefer, entry.method))
        except HubError as error:
            out.append({"response": {"status": status_line(error.status), "outcome": from_error(error)}})
        except Exception:  # one broken entry must not sink the others
            log.exception("batch entry %d failed", index)
            issue = Issue("exception", f"Bundle.entry[{index}] failed with an internal error; it was not applied")
            out.append({"response": {"status": status_line(500), "outcome": operation_outcome([issue])}})
    return out


# -- transaction ---------------------------------------------------------------

def _criteria(entry: BundleEntry) -> str:
    """The conditional criteria of an entry: If-None-Exist of a POST, else its URL query."""
    return (entry.if_none_exist or "") if entry.method == "POST" else entry.query


def _root(entry: BundleEntry) -> BundleEntry:
    """The entry that really writes (or matched) what ``entry`` stands for."""
    while entry.same_as is not None:
        entry = entry.same_as
    return entry


class _PendingWrites:
    """The resources a transaction will write, findable by their search values in O(1).

    Index values are extracted only for the types some conditional search of the
    bundle looks at (most bundles search none, or only Patients).
    """

    def __init__(self, extract: Callable[[dict[str, Any]], IndexValues]) -> None:
        self.extract = extract
        #: Every pending resource: its index values, or None until its type is searched.
        self.index: dict[tuple[str, str], IndexValues | None] = {}
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}
        self._searched_types: set[str] = set()
        self._by_token: dict[tuple[str, str, str | None, str], set[tuple[str, str]]] = {}
        self.existing_per_type: dict[str, int] = {}

    def add(self, key: tuple[str, str], resource: dict[str, Any], *, may_exist: bool) -> None:
        self.index[key] = None
        self._resources[key] = resource
        if may_exist:
            self.existing_per_type[key[0]] = self.existing_per_type.get(key[0], 0) + 1
        if key[0] in self._searched_types:
            self._extract(key)

    def _extract(self, key: tuple[str, str]) -> None:
        values = self.extract(self._resources.pop(key))
        self.index[key] = values
        for token in values.tokens:
            for system in (token.system, None):
                self._by_token.setdefault((key[0], token.param, system, token.value), set()).add(key)

    def _searched(self, resource_type: str) -> None:
        if resource_type not in self._searched_types:
            self._searched_types.add(resource_type)
            for key in [k for k in self._resources if k[0] == resource_type]:
                self._extract(key)

    def matches(self, spec: SearchSpec) -> list[tuple[str, str]]:
        """Pending resources of ``spec.resource_type`` matching ``spec``."""
        assert spec.resource_type is not None
        self._searched(spec.resource_type)
        candidates: set[tuple[str, str]] | None = None
        for criterion in spec.criteria:
            if isinstance(criterion, IdCriterion):
                found = {(spec.resource_type, i) for i in criterion.ids if (spec.resource_type, i) in self.index}
            elif isinstance(criterion, TokenCriterion) and not criterion.negate and all(
                code is not None for _s, code in criterion.values
            ):
                found = set()
                for system, code in criterion.values:
                    found |= self._by_token.get((spec.resource_type, criterion.param, system, code or ""), set())
            else:  # system-only tokens: check every pending resource of the type
                found = {k for k in self.index if k[0] == spec.resource_type}
            candidates = found if candidates is None else candidates & found
        return sorted(k for k in candidates or () if matches_in_memory(spec, k[1], self.index[k] or IndexValues()))


class _Transaction:
    """One transaction Bundle being processed (see the module docstring for the steps)."""

    def __init__(self, service: FhirService, entries: list[BundleEntry], base_url: str, prefer: str) -> None:
        self.service = service
        self.entries = entries
        self.base_url = base_url
        self.prefer = prefer
        #: fullUrl → "Type/id" of the resource the entry resolved to.
        self.identities: dict[str, str] = {}
        #: (type, canonical criteria) → the entry that resolved them first.
        self.criteria_owner: dict[tuple[str, str], BundleEntry] = {}
        self.pending = _PendingWrites(service.index_values)

    def run(self) -> list[dict[str, Any]]:
        self._check_access()
        self._check_full_urls()
        self._lock_conditional_writes()
        deletes = self._of("DELETE")
        for entry in deletes:
            self._guard(entry, self._resolve_delete)
        self._check_overlaps()
        for entry in sorted((e for e in deletes if e.target), key=lambda e: e.target or ()):
            self._guard(entry, self._delete)
        # Resolve what the bundle writes so that the result does not depend on entry order:
        # known targets first, then conditional updates, patches and creates.
        for entry in self._of("POST", "PUT", "PATCH"):
            if not _criteria(entry):
                self._guard(entry, self._resolve_known)
        for method, step in (("PUT", self._resolve_conditional_update), ("PATCH", self._resolve_conditional_patch),
                             ("POST", self._resolve_conditional_create)):
            for entry in self._of(method):
                if entry.target is None and entry.existing is None and entry.same_as is None:
                    self._guard(entry, step)
        self._check_overlaps()
        self._record_identities()
        for entry in self._of("POST", "PUT"):
            self._guard(entry, self._rewrite_references)
        self._create_all(self._of("POST"))
        self._create_new_puts()
        for entry in sorted(self._of("PUT", "PATCH"), key=lambda e: e.target or ()):
            if entry.outcome is None:
                self._guard(entry, self._dispatch)
        for entry in self._of("GET", "HEAD"):
            self._guard(entry, self._dispatch)
        self._answer_matched_creates()
        return [entry_response(e.outcome, self.prefer, e.method) for e in self.entries if e.outcome]

    # -- steps ---------------------------------------------------------------

    def _check_access(self) -> None:
        """Every entry's interaction is allowed, before anything is searched or read (all or nothing)."""
        needs = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}
        for entry in self.entries:
            if entry.method in needs:
                try:
                    self.service.access.require(self._split(entry)[0], needs[entry.method])
                except HubError as error:
                    raise entry.located(error) from None

    def _lock_conditional_writes(self) -> None:
        """Lock every conditional create/update criterion up front, in one sorted batch."""
        specs = []
        for entry in self.entries:
            criteria = _criteria(entry)
            if entry.method in ("POST", "PUT") and criteria:
                try:
                    specs.append(self.service.conditional_spec(self._split(entry)[0], criteria))
                except HubError as error:
                    raise entry.located(error) from None
        self.service.lock_criteria(specs)

    def _resolve_delete(self, entry: BundleEntry) -> None:
        resource_type, resource_id = self._split(entry)
        if resource_id is None:
            match = self.service.find_existing(resource_type, entry.query)
            if match is None:
                entry.outcome = Outcome(200, message=f"No {resource_type} matches the criteria; nothing deleted")
                return
            resource_id = match.id
        entry.target = (resource_type, resource_id)

    def _delete(self, entry: BundleEntry) -> None:
        assert entry.target is not None
        entry.outcome = self.service.delete(*entry.target, if_match=entry.if_match)

    def _resolve_known(self, entry: BundleEntry) -> None:
        """POSTs without If-None-Exist, and PUT/PATCH of an id."""
        resource_type, resource_id = self._split(entry)
        if entry.method == "POST":
            self._pend(entry, (resource_type, self.service.new_id()))
        elif resource_id is None:
            raise InvalidRequest(f"{entry.method} {resource_type} needs an id or search criteria")
        elif entry.method == "PUT":
            self._pend(entry, (resource_type, resource_id))
        else:
            self._pend_patch(entry, (resource_type, resource_id))

    def _resolve_conditional_update(self, entry: BundleEntry) -> None:
        resource_type = self._split(entry)[0]
        spec = self.service.conditional_spec(resource_type, entry.query)
        self.criteria_owner.setdefault((resource_type, canonical_criteria(spec)), entry)
        match_id = self._single_match_id(spec, entry.query)
        target_id = self.service.update_target(resource_type, entry.query, entry.resource, match_id)
        entry.url = f"{resource_type}/{target_id}"
        entry.resource = {**entry.resource, "id": target_id}
        self._pend(entry, (resource_type, target_id))

    def _resolve_conditional_patch(self, entry: BundleEntry) -> None:
        resource_type = self._split(entry)[0]
        spec = self.service.conditional_spec(resource_type, entry.query)
        match_id = self._single_match_id(spec, entry.query)
        if match_id is None:
            raise NotFound(f"No {resource_type} matches '{clip(entry.query, 120)}'")
        entry.url = f"{resource_type}/{match_id}"
        self._pend_patch(entry, (resource_type, match_id))

    def _resolve_conditional_create(self, entry: BundleEntry) -> None:
        resource_type = self._split(entry)[0]
        assert entry.if_none_exist is not None
        spec = self.service.conditional_spec(resource_type, entry.if_none_exist)
        owner = self.criteria_owner.get((resource_type, canonical_criteria(spec)))
        if owner is not None:
            entry.same_as = owner
            return
        self.criteria_owner[(resource_type, canonical_criteria(spec))] = entry
        match = single_match(self._matches(spec), resource_type, entry.if_none_exist)
        if match is None:
            self._pend(entry, (resource_type, self.service.new_id()))
        elif isinstance(match, tuple):  # a resource this bundle writes
            entry.same_as = self._writer_of(match)
        else:
            entry.existing = match

    def _single_match_id(self, spec: SearchSpec, criteria: str) -> str | None:
        match = single_match(self._matches(spec), spec.resource_type, criteria)
        if match is None:
            return None
        return match[1] if isinstance(match, tuple) else match.id

    def _pend(self, entry: BundleEntry, target: tuple[str, str]) -> None:
        entry.target = target
        resource = {**entry.resource, "resourceType": target[0], "id": target[1]}
        self.pending.add(target, resource, may_exist=entry.method == "PUT")

    def _pend_patch(self, entry: BundleEntry, target: tuple[str, str]) -> None:
        entry.target = target
        patched = self.service.preview_patch(target[0], target[1], entry.resource)
        self.pending.add(target, patched, may_exist=True)

    def _record_identities(self) -> None:
        prefix = self.base_url + "/" if self.base_url else None
        for entry in self.entries:
            if entry.full_url and entry.method in ("POST", "PUT"):
                identity = self._identity_of(entry)
                self.identities[entry.full_url] = identity
                if prefix and entry.full_url.startswith(prefix):
                    # relative references resolve against the fullUrl's base (bundle.html#references)
                    self.identities.setdefault(entry.full_url[len(prefix):], identity)

    def _matches(self, spec: SearchSpec) -> list[Any]:
        """Stored matches (StoredResource) and matches among this bundle's writes ((type, id))."""
        rewritten = self.pending.existing_per_type.get(spec.resource_type, 0)
        stored = self.service.find_matches(spec, limit=2 + rewritten)
        # A stored resource this bundle rewrites is judged by its new content, not its stored one.
        found: list[Any] = [m for m in stored if (spec.resource_type, m.id) not in self.pending.index]
        found.extend(self.pending.matches(spec))
        return found

    def _check_full_urls(self) -> None:
        seen: dict[str, int] = {}
        for entry in self.entries:
            if entry.full_url is None:
                continue
            if entry.full_url in seen:
                raise InvalidRequest(
                    f"Bundle.entry[{entry.index}] repeats the fullUrl of Bundle.entry[{seen[entry.full_url]}]",
                    expression=f"Bundle.entry[{entry.index}].fullUrl",
                )
            seen[entry.full_url] = entry.index

    def _check_overlaps(self) -> None:
        seen: dict[tuple[str, str], int] = {}
        for entry in self.entries:
            if entry.target is None or entry.method not in ("DELETE", "POST", "PUT", "PATCH"):
                continue
            if entry.target in seen:
                raise InvalidRequest(
                    f"Bundle.entry[{entry.index}] and Bundle.entry[{seen[entry.target]}] both change "
                    f"{entry.target[0]}/{entry.target[1]}; a transaction may change a resource only once",
                    expression=f"Bundle.entry[{entry.index}]",
                )
            seen[entry.target] = entry.index

    def _rewrite_references(self, entry: BundleEntry) -> None:
        if entry.resource.get("resourceType") == "Bundle":
            return  # a stored Bundle (a document) keeps its own internal references
        for holder in iter_references(entry.resource):
            reference = holder["reference"]
            if reference in self.identities:
                holder["reference"] = self.identities[reference]
            elif reference.startswith(("urn:uuid:", "urn:oid:")):
                raise InvalidRequest(f"Reference '{clip(reference, 80)}' matches no fullUrl in this transaction")
            elif "?" in reference and "/" not in reference.split("?", 1)[0]:
                holder["reference"] = self._resolve_conditional_reference(reference)

    def _resolve_conditional_reference(self, reference: str) -> str:
        resource_type, _, criteria = reference.partition("?")
        spec = self.service.conditional_spec(resource_type, criteria)
        owner = self.criteria_owner.get((resource_type, canonical_criteria(spec)))
        if owner is not None:
            return self._identity_of(owner)
        match = single_match(self._matches(spec), resource_type, criteria)
        if match is None:
            raise InvalidRequest(f"Conditional reference '{clip(reference, 120)}' matches no resource")
        return "/".join(match) if isinstance(match, tuple) else f"{resource_type}/{match.id}"

    def _create_all(self, entries: list[BundleEntry]) -> None:
        writes = []
        for entry in entries:
            if entry.target is None:
                continue
            try:
                write = self.service.prepare_create(entry.target[0], entry.resource, entry.target[1])
            except HubError as error:
                raise entry.located(error) from None
            writes.append(write)
            entry.outcome = Outcome(201, write.new)
        if writes:
            self.service.repository.write_many(writes)

    def _create_new_puts(self) -> None:
        """PUTs of resources that do not exist yet (update-as-create), written in one bulk insert.

        A loader's bundle is mostly such PUTs; one by one each costs several round trips.
        If another writer creates one of them meanwhile, the bulk insert is undone and
        the entries take the one-by-one path (with its compare-and-swap retries).
        """
        candidates = [e for e in self._of("PUT") if e.target and not e.if_match and e.path == "/".join(e.target)]
        if len(candidates) < 2:
            return
        existing = self.service.repository.read_current_many([e.target for e in candidates if e.target])
        fresh = [e for e in candidates if e.target not in existing]
        writes = []
        for entry in fresh:
            assert entry.target is not None
            try:
                writes.append(self.service.prepare_put_create(entry.target[0], entry.target[1], entry.resource))
            except HubError as error:
                raise entry.located(error) from None
        if not writes:
            return
        try:
            with self.service.repository.savepoint():
                self.service.repository.write_many(writes)
        except VersionConflict:
            return
        for entry, write in zip(fresh, writes, strict=True):
            entry.outcome = Outcome(201, write.new)

    def _answer_matched_creates(self) -> None:
        """Conditional creates that matched: 200 with the resource they matched."""
        for entry in self._of("POST"):
            if entry.existing is not None:
                existing = entry.existing
                entry.outcome = Outcome(200, existing, message=f"{existing.resource_type}/{existing.id} exists")
            elif entry.same_as is not None:
                owner = _root(entry)
                resource = owner.existing or (owner.outcome.resource if owner.outcome else None)
                entry.outcome = Outcome(200, resource, message=f"Same resource as Bundle.entry[{owner.index}]")

    def _dispatch(self, entry: BundleEntry) -> None:
        entry.outcome = dispatch(self.service, entry.request(), self.base_url)

    # -- helpers -------------------------------------------------------------

    def _of(self, *methods: str) -> list[BundleEntry]:
        return [e for e in self.entries if e.method in methods]

    def _guard(self, entry: BundleEntry, step: Any) -> None:
        try:
            step(entry)
        except HubError as error:
            raise entry.located(error) from None

    def _split(self, entry: BundleEntry) -> tuple[str, str | None]:
        segments = [s for s in entry.path.split("/") if s]
        if not segments or len(segments) > 2 or (entry.method == "POST" and len(segments) != 1):
            raise InvalidRequest(f"{entry.method} {clip(entry.url, 80)} is not a valid transaction request URL")
        return segments[0], segments[1] if len(segments) == 2 else None

    def _writer_of(self, target: tuple[str, str]) -> BundleEntry:
        return next(e for e in self.entries if e.target == target and e.method in ("POST", "PUT"))

    def _identity_of(self, entry: BundleEntry) -> str:
        entry = _root(entry)
        if entry.existing is not None:
            return f"{entry.existing.resource_type}/{entry.existing.id}"
        if entry.target is None:
            raise InvalidRequest(f"Bundle.entry[{entry.index}] has no resolved identity")
        return "/".join(entry.target)
