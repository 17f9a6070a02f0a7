"""``POST [base]`` with a ``transaction`` or ``batch`` Bundle.

A transaction is all-or-nothing, processed as R4 sets out (http.html#trules):

1. DELETEs (conditional ones resolved first) run before anything else is resolved, so
   conditional creates and references never land on a resource the bundle deletes;
2. POST and PUT targets are resolved — ``If-None-Exist`` and conditional PUT against the
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
from typing import Any

from hub.errors import HubError, InvalidRequest, Issue, MultipleMatches, NotFound
from hub.fhir.bundle_entries import BundleEntry, parse_entry
from hub.fhir.indexing import extract_index
from hub.fhir.outcome import from_error, operation_outcome
from hub.fhir.references import iter_references
from hub.fhir.repository import IdCriterion, IndexValues, SearchSpec, TokenCriterion
from hub.fhir.response import entry_response, status_line
from hub.fhir.router import dispatch
from hub.fhir.search import matches_in_memory
from hub.fhir.service import FhirService, Outcome, canonical_criteria

log = logging.getLogger("hub.fhir.transaction")


def process_bundle(service: FhirService, body: Any, base_url: str, prefer: str) -> dict[str, Any]:
    """Run a transaction or batch Bundle and return its response Bundle."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the server base needs a Bundle of type transaction or batch")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise InvalidRequest(
            f"Bundle type '{str(kind)[:30]}' cannot be processed; use transaction or batch", expression="Bundle.type"
        )
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be an array", expression="Bundle.entry")
    if kind == "batch":
        entries = _batch(service, raw_entries, base_url, prefer)
    else:
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
            out.append(entry_response(outcome, prefer, include_resource=entry.method in ("GET", "HEAD")))
        except HubError as error:
            out.append({"response": {"status": status_line(error.status), "outcome": from_error(error)}})
        except Exception:  # one broken entry must not sink the others
            log.exception("batch entry %d failed", index)
            issue = Issue("exception", f"Bundle.entry[{index}] failed with an internal error; it was not applied")
            out.append({"response": {"status": status_line(500), "outcome": operation_outcome([issue])}})
    return out


# -- transaction ---------------------------------------------------------------

class _PendingWrites:
    """The resources a transaction will write, findable by their search values in O(1)."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], IndexValues] = {}
        self._by_token: dict[tuple[str, str, str | None, str], set[tuple[str, str]]] = {}
        self.existing_per_type: dict[str, int] = {}

    def add(self, key: tuple[str, str], values: IndexValues, *, may_exist: bool) -> None:
        self.index[key] = values
        if may_exist:
            self.existing_per_type[key[0]] = self.existing_per_type.get(key[0], 0) + 1
        for token in values.tokens:
            for system in (token.system, None):
                self._by_token.setdefault((key[0], token.param, system, token.value), set()).add(key)

    def matches(self, spec: SearchSpec) -> list[tuple[str, str]]:
        """Pending resources of ``spec.resource_type`` matching ``spec``."""
        candidates: set[tuple[str, str]] | None = None
        for criterion in spec.criteria:
            if isinstance(criterion, IdCriterion):
                found = {(spec.resource_type, i) for i in criterion.ids if (spec.resource_type, i) in self.index}
            elif isinstance(criterion, TokenCriterion) and all(code is not None for _s, code in criterion.values):
                found = set()
                for system, code in criterion.values:
                    found |= self._by_token.get((spec.resource_type, criterion.param, system, code or ""), set())
            else:  # system-only tokens: check every pending resource of the type
                found = {k for k in self.index if k[0] == spec.resource_type}
            candidates = found if candidates is None else candidates & found
        return sorted(k for k in candidates or () if matches_in_memory(spec, k[1], self.index[k]))


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
        self.pending = _PendingWrites()

    def run(self) -> list[dict[str, Any]]:
        self._check_full_urls()
        for entry in self._of("DELETE"):
            self._guard(entry, self._delete)
        for entry in self._of("POST", "PUT", "PATCH"):
            self._guard(entry, self._resolve_write)
        self._check_overlaps()
        for entry in self._of("POST", "PUT"):
            self._guard(entry, self._rewrite_references)
        self._create_all(self._of("POST"))
        for entry in self._of("PUT", "PATCH", "GET", "HEAD"):
            self._guard(entry, self._dispatch)
        self._answer_matched_creates()
        include = ("GET", "HEAD")
        return [entry_response(e.outcome, self.prefer, e.method in include) for e in self.entries if e.outcome]

    # -- steps ---------------------------------------------------------------

    def _delete(self, entry: BundleEntry) -> None:
        resource_type, resource_id = self._split(entry)
        if resource_id is None:
            match = self.service.find_existing(resource_type, entry.query)
            if match is None:
                entry.outcome = Outcome(200, message=f"No {resource_type} matches the criteria; nothing deleted")
                return
            resource_id = match.id
        entry.target = (resource_type, resource_id)
        entry.outcome = self.service.delete(resource_type, resource_id, if_match=entry.if_match)

    def _resolve_write(self, entry: BundleEntry) -> None:
        resource_type, resource_id = self._split(entry)
        if entry.method == "POST":
            if resource_id is not None:
                raise InvalidRequest("A POST entry's request.url must be a resource type")
            if entry.if_none_exist:
                self._resolve_conditional_create(entry, resource_type)
            if entry.existing is None and entry.same_as is None:
                entry.target = (resource_type, self.service.new_id())
        elif resource_id is not None:
            entry.target = (resource_type, resource_id)
        elif entry.method == "PUT":
            entry.target = (resource_type, self._resolve_conditional_update(entry, resource_type))
            entry.url = "/".join(entry.target)
            entry.resource = {**entry.resource, "id": entry.target[1]}
        else:  # conditional PATCH: only existing resources
            match = self.service.find_existing(resource_type, entry.query)
            if match is None:
                raise NotFound(f"No {resource_type} matches '{entry.query[:120]}'")
            entry.target = (resource_type, match.id)
            entry.url = "/".join(entry.target)
        if entry.target is not None and entry.method in ("POST", "PUT"):
            values = extract_index({**entry.resource, "resourceType": resource_type})
            self.pending.add(entry.target, values, may_exist=entry.method == "PUT")
        if entry.full_url:
            self.identities[entry.full_url] = self._identity_of(entry)

    def _resolve_conditional_create(self, entry: BundleEntry, resource_type: str) -> None:
        assert entry.if_none_exist is not None
        spec = self.service.conditional_spec(resource_type, entry.if_none_exist)
        owner = self.criteria_owner.get((resource_type, canonical_criteria(spec)))
        if owner is not None:
            entry.same_as = owner
            return
        self.criteria_owner[(resource_type, canonical_criteria(spec))] = entry
        matches = self._matches(spec, for_write=True)
        if len(matches) > 1:
            raise MultipleMatches(f"If-None-Exist '{entry.if_none_exist[:120]}' matches more than one {resource_type}")
        if matches:
            key = matches[0]
            if isinstance(key, tuple):  # a resource this bundle writes
                entry.same_as = self._writer_of(key)
            else:
                entry.existing = key

    def _resolve_conditional_update(self, entry: BundleEntry, resource_type: str) -> str:
        spec = self.service.conditional_spec(resource_type, entry.query)
        self.criteria_owner.setdefault((resource_type, canonical_criteria(spec)), entry)
        matches = self._matches(spec, for_write=True)
        if len(matches) > 1:
            raise MultipleMatches(f"The criteria '{entry.query[:120]}' match more than one {resource_type}")
        if matches:
            match = matches[0]
            match_id = match[1] if isinstance(match, tuple) else match.id
            body_id = entry.resource.get("id")
            if body_id is not None and body_id != match_id:
                raise InvalidRequest(f"The resource id '{str(body_id)[:64]}' does not match {resource_type}/{match_id} "
                                     "found by the criteria")
            return match_id
        return self.service.resolve_update_target(resource_type, entry.query, entry.resource)

    def _matches(self, spec: SearchSpec, *, for_write: bool) -> list[Any]:
        """Stored matches (StoredResource) and matches among this bundle's writes ((type, id))."""
        rewritten = self.pending.existing_per_type.get(spec.resource_type, 0)
        stored = self.service.find_matches(spec, for_write=for_write, limit=2 + rewritten)
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
        for holder in iter_references(entry.resource):
            reference = holder["reference"]
            if reference in self.identities:
                holder["reference"] = self.identities[reference]
            elif reference.startswith(("urn:uuid:", "urn:oid:")):
                raise InvalidRequest(f"Reference '{reference[:80]}' matches no fullUrl in this transaction")
            elif "?" in reference and "/" not in reference.split("?", 1)[0]:
                holder["reference"] = self._resolve_conditional_reference(reference)

    def _resolve_conditional_reference(self, reference: str) -> str:
        resource_type, _, criteria = reference.partition("?")
        spec = self.service.conditional_spec(resource_type, criteria)
        owner = self.criteria_owner.get((resource_type, canonical_criteria(spec)))
        if owner is not None:
            return self._identity_of(owner)
        matches = self._matches(spec, for_write=False)
        if len(matches) > 1:
            raise MultipleMatches(f"Conditional reference '{reference[:120]}' matches more than one resource")
        if not matches:
            raise InvalidRequest(f"Conditional reference '{reference[:120]}' matches no resource")
        match = matches[0]
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

    def _answer_matched_creates(self) -> None:
        """Conditional creates that matched: 200 with the resource they matched."""
        for entry in self._of("POST"):
            if entry.existing is not None:
                existing = entry.existing
                entry.outcome = Outcome(200, existing, message=f"{existing.resource_type}/{existing.id} exists")
            elif entry.same_as is not None:
                owner = entry.same_as
                while owner.same_as is not None:
                    owner = owner.same_as
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
            raise InvalidRequest(f"{entry.method} {entry.url[:80]} is not a valid transaction request URL")
        return segments[0], segments[1] if len(segments) == 2 else None

    def _writer_of(self, target: tuple[str, str]) -> BundleEntry:
        return next(e for e in self.entries if e.target == target and e.method in ("POST", "PUT"))

    def _identity_of(self, entry: BundleEntry) -> str:
        while entry.same_as is not None:
            entry = entry.same_as
        if entry.existing is not None:
            return f"{entry.existing.resource_type}/{entry.existing.id}"
        if entry.target is None:
            raise InvalidRequest(f"Bundle.entry[{entry.index}] has no resolved identity")
        return "/".join(entry.target)
