"""The mapping-conflict review: list, open (with suggestions), decide, bulk-approve.

Decisions:
- ``approve`` — map the local code to a target (a suggestion or one the reviewer enters);
  other active targets of the code are retired; for display drift the new display is adopted;
- ``not-applicable`` — the code needs no standard code (an ``unmatched`` row: never flagged again);
  for a unit conflict: the code keeps its target but its values are not converted;
- ``reject`` — close the conflict without changing the tables (the flagged state is accepted).

A decision names the conflict version the reviewer saw: when someone else decided first,
it fails with 409 and changes nothing. After the decision commits, the stored resources
carrying the code are re-normalized (:mod:`hub.governance.renormalize`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.mapping_tables import MappingRow, element_of, local_system, source_scopes, split_local
from hub.coding.normalizer import ELEMENTS
from hub.coding.suggest import suggest
from hub.coding.table_checks import target_problem
from hub.coding.terminology import Terminology, TerminologyCache
from hub.coding.text import fold
from hub.errors import Conflict, InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.governance.tables import TableChange, all_tables, follow_change, lock_tables, write_table
from hub.privacy import clip
from hub.store.conflicts import ConflictFilter
from hub.store.database import Database

ACTIONS = {"approve": "approved", "reject": "rejected", "not-applicable": "not-applicable"}


@dataclass(frozen=True)
class Decision:
    """What a reviewer decided about one conflict."""

    action: str
    version: int
    reviewer: str
    reason: str
    #: For ``approve``: {"system", "code", "display"?, "target_unit"?}.
    target: dict[str, str] | None = None
    #: The table to write (default: the conflict's own source or table).
    scope: str | None = None


@dataclass
class ReviewContext:
    """What suggestions are computed from: every scope's table and the standards' code systems."""

    tables: dict[str, list[MappingRow]]
    standards: dict[str, CodeSystemIndex | None]


def review_context(database: Database, cache: TerminologyCache) -> ReviewContext:
    """The tables and standards in force now (read once for a page or a bulk decision)."""
    with database.fhir_service(write=False) as service:
        terminology = Terminology(service, cache)
        standards = {spec.target_system: terminology.code_system(spec.target_system)
                     for spec in ELEMENTS.values() if spec.target_system}
        return ReviewContext(all_tables(terminology), standards)


def conflict_detail(database: Database, cache: TerminologyCache, conflict_id: int,
                    context: ReviewContext | None = None) -> dict[str, Any]:
    """One conflict with its ranked suggestions, the rows in force for its code, and its decisions."""
    with database.conflicts(write=False) as store:
        conflict = store.get(conflict_id)
        if conflict is None:
            raise NotFound(f"Mapping conflict {conflict_id} does not exist")
        conflict["decisions"] = store.decisions(conflict_id)
    context = context or review_context(database, cache)
    spec = ELEMENTS.get(conflict["element"])
    index = context.standards.get(spec.target_system) if spec and spec.target_system else None
    wanted = fold(conflict["display"])
    approved: Counter[tuple[str, str, str]] = Counter()
    rows_in_force = []
    own = _local_key(conflict)
    for scope, rows in context.tables.items():
        for row in rows:
            if row.key == own:
                rows_in_force.append({"scope": scope, **row.__dict__})
            elif (row.status == "active" and row.target_code and wanted and fold(row.source_display) == wanted
                  and element_of(row.source_system) == conflict["element"]):
                approved[(row.target_system, row.target_code, row.target_display)] += 1
    code = conflict["code"] if conflict["kind"] != "inconsistent" else ""
    conflict["suggestions"] = [s.as_dict() for s in suggest(
        conflict["display"], code, index, [(s, c, d, n) for (s, c, d), n in approved.most_common()])]
    conflict["mappings"] = rows_in_force
    return conflict


def names_of(database: Database, conflicts: list[dict[str, Any]]) -> dict[str, str]:
    """The names of the sources and institutions ``conflicts`` mention (ids → names, for people to read)."""
    source_ids = {s for c in conflicts for s in c["sources"]}
    institution_ids = {i for c in conflicts for i in c["institutions"]}
    names: dict[str, str] = {}
    if source_ids:
        with database.sources(write=False) as sources:
            names.update({s.source_id: s.name for s in sources.all() if s.source_id in source_ids and s.name})
    if institution_ids:
        with database.unit_of_work(write=False) as repository:
            found = repository.read_current_many([("Organization", i) for i in sorted(institution_ids)])
        for (_type, org_id), stored in found.items():
            name = jsonio.loads_stored(stored.content).get("name") if stored.content else None
            if isinstance(name, str):
                names[org_id] = name
    return names


def _local_key(conflict: dict[str, Any]) -> tuple[str, str]:
    return conflict["system"], conflict["code"]


def _set_target(key: tuple[str, str], display: str, target: MappingRow | None, note: str, new_display: bool
                ) -> Callable[[list[MappingRow]], list[MappingRow]]:
    """An edit: ``key`` maps to ``target`` alone (None: to nothing, ``unmatched``); others of the key retired."""
    def edit(rows: list[MappingRow]) -> list[MappingRow]:
        out, placed = [], False
        for row in rows:
            if row.key != key:
                out.append(row)
                continue
            same = target is not None and (row.target_system, row.target_code) == (target.target_system,
                                                                                   target.target_code)
            if same and not placed:
                out.append(replace(row, status="active", equivalence=target.equivalence, comment=note,
                                   source_display=display if new_display or not row.source_display
                                   else row.source_display,
                                   target_display=target.target_display or row.target_display,
                                   target_unit=target.target_unit or row.target_unit))
                placed = True
            elif row.status == "active":
                out.append(replace(row, status="retired"))
            else:
                out.append(row)
        if not placed:
            chosen = target or MappingRow(key[0], key[1], equivalence="unmatched")
            out.append(replace(chosen, source_system=key[0], source_code=key[1], source_display=display,
                               status="active", comment=note))
        return out

    return edit


def _without_conversion(key: tuple[str, str], in_force: MappingRow, note: str
                        ) -> Callable[[list[MappingRow]], list[MappingRow]]:
    """An edit: ``key`` keeps its target, but its values are no longer converted."""
    def edit(rows: list[MappingRow]) -> list[MappingRow]:
        if any(row.key == key and row.status == "active" for row in rows):
            return [replace(row, target_unit="", comment=note) if row.key == key and row.status == "active" else row
                    for row in rows]
        return [*rows, replace(in_force, source_system=key[0], source_code=key[1], target_unit="", comment=note)]

    return edit


def _conflict_scopes(database: Database, conflict: dict[str, Any]) -> list[str]:
    """The tables a conflict's code is looked up in: its own scope, then (for a source) its vendor profile's."""
    local = split_local(conflict["system"])
    if local is None:
        return []
    with database.sources(write=False) as sources:
        source = sources.get(local[0])
    return source_scopes(source.source_id, source.adapter) if source is not None else [local[0]]


def _row_in_force(database: Database, cache: TerminologyCache, conflict: dict[str, Any]) -> MappingRow | None:
    """The active row a source's code is normalized with (its own table first, then its profile's)."""
    scopes = _conflict_scopes(database, conflict)
    with database.fhir_service(write=False) as service:
        tables = all_tables(Terminology(service, cache))
    for scope in scopes:
        for row in tables.get(scope, []):
            if (row.status == "active" and row.source_code == conflict["code"]
                    and element_of(row.source_system) == conflict["element"]):
                return row
    return None


def _edits(conflict: dict[str, Any], decision: Decision, target: MappingRow | None
           ) -> list[tuple[str, Callable[[list[MappingRow]], list[MappingRow]]]]:
    if decision.action == "reject":
        return []
    note = clip(f"{decision.reviewer}：{decision.reason}", 300)
    element = conflict["element"]
    if conflict["kind"] == "inconsistent":
        pairs = [(m["scope"], local_system(m["scope"], element), m["code"]) for m in conflict["info"]["mappings"]]
    else:
        local = split_local(conflict["system"])
        if local is None:
            raise InvalidRequest("This conflict is not about a local code")
        scope = decision.scope or local[0]
        pairs = [(scope, local_system(scope, element), conflict["code"])]
    if conflict["kind"] == "unit" and decision.action == "not-applicable":
        if target is None:
            raise InvalidRequest("No mapping of this code is in force any more; reject the conflict instead")
        return [(scope, _without_conversion((system, code), target, note)) for scope, system, code in pairs]
    drift = conflict["kind"] == "display-drift"
    return [(scope, _set_target((system, code), conflict["display"], target, note, drift))
            for scope, system, code in pairs]


def _target_row(database: Database, cache: TerminologyCache, decision: Decision) -> MappingRow | None:
    if decision.action != "approve":
        return None
    target = decision.target or {}
    if not target.get("system") or not target.get("code"):
        raise InvalidRequest("Approving needs the target system and code")
    row = MappingRow("", "", target_system=target["system"], target_code=target["code"],
                     target_display=target.get("display", ""), equivalence=target.get("equivalence", "equivalent"),
                     target_unit=target.get("target_unit", ""))
    with database.fhir_service(write=False) as service:
        terminology = Terminology(service, cache)
        problem = target_problem(row, terminology.code_system)
        index = terminology.code_system(row.target_system)
    if problem:
        raise InvalidRequest(f"The target cannot be used: {problem}")
    if not row.target_display and index is not None:
        concept = index.get(row.target_code)
        row = replace(row, target_display=(concept.display or "") if concept else "")
    return row


def decide(database: Database, cache: TerminologyCache, conflict_id: int, decision: Decision, *,
           follow: bool = True) -> dict[str, Any]:
    """Record ``decision`` and change the tables it implies; then (``follow``) re-normalize stored data."""
    if decision.action not in ACTIONS:
        raise InvalidRequest(f"The action must be one of {', '.join(ACTIONS)}")
    if not decision.reason.strip():
        raise InvalidRequest("A decision needs a reason")
    target = _target_row(database, cache, decision)
    with database.conflicts(write=False) as store:
        conflict = store.get(conflict_id)
    if conflict is None:
        raise NotFound(f"Mapping conflict {conflict_id} does not exist")
    if decision.scope and conflict["kind"] != "inconsistent":
        allowed = _conflict_scopes(database, conflict)
        if decision.scope not in allowed:
            raise InvalidRequest(f"This conflict's code can be mapped in the table of {' or '.join(allowed)} only")
    if decision.action == "not-applicable" and conflict["kind"] == "unit":  # keep the target, do not convert
        target = _row_in_force(database, cache, conflict)
    changes = _record(database, cache, conflict_id, decision, target)
    result: dict[str, Any] = {"changes": changes}
    if follow:
        result["changes"] = follow_decision(database, cache, conflict_id, changes, actor=decision.reviewer,
                                            reason=decision.reason)
    return result


def _record(database: Database, cache: TerminologyCache, conflict_id: int, decision: Decision,
            target: MappingRow | None) -> list[TableChange]:
    """The decision, the table versions it implies and its log entry, in one transaction."""
    now = now_utc()
    with database.review_batch() as (service, store):
        conflict = store.get(conflict_id)
        if conflict is None:
            raise NotFound(f"Mapping conflict {conflict_id} does not exist")
        if not store.decide(conflict_id, decision.version, ACTIONS[decision.action], decision.reviewer,
                            decision.reason, now):
            raise Conflict(f"Conflict {conflict_id} changed since version {decision.version} "
                           f"(now {conflict['version']}, {conflict['status']}): reload it and decide again")
        edits = _edits(conflict, decision, target)
        lock_tables(service, [scope for scope, _edit in edits])
        changes = [write_table(service, cache, scope, edit) for scope, edit in edits]
        chosen = {"target": decision.target, "scope": decision.scope,
                  "tables": [{"scope": c.scope, "version": c.version} for c in changes]}
        store.log_decision(conflict_id, decision.action, chosen, {}, decision.reviewer, decision.reason, now)
    return changes


def follow_decision(database: Database, cache: TerminologyCache, conflict_id: int, changes: list[TableChange], *,
                    actor: str, reason: str) -> list[TableChange]:
    """After a decision committed: re-check the tables, re-normalize stored data, log the counts."""
    followed = [follow_change(database, cache, c, actor=actor, reason=f"冲突 {conflict_id}：{reason}")
                for c in changes]
    with database.conflicts(write=True) as store:
        store.set_result(conflict_id, {"tables": [c.as_dict() for c in followed]})
    return followed


def decided_view(database: Database, conflict_id: int, changes: list[TableChange],
                 running: bool = False) -> dict[str, Any]:
    """The API answer of a decision: the conflict as it is now and what the decision changed
    (``running``: the re-normalization goes on in the background; the decision history will show its counts)."""
    with database.conflicts(write=False) as store:
        conflict = store.get(conflict_id)
    return {"conflict": conflict, "tables": [c.as_dict() for c in changes],
            "renormalization": "running" if running else "done"}


def bulk_approve(database: Database, cache: TerminologyCache, selection: ConflictFilter, *, reviewer: str,
                 reason: str, min_score: float = 0.9, limit: int = 500) -> dict[str, Any]:
    """Approve the best suggestion of every open conflict ``selection`` covers, when it scores ``min_score``."""
    if not reason.strip():
        raise InvalidRequest("A decision needs a reason")
    selection = replace(selection, status="open")
    with database.conflicts(write=False) as store:
        ids = store.ids(selection, limit)
    approved, skipped = [], []
    merged: dict[str, TableChange] = {}
    context = review_context(database, cache)
    for conflict_id in ids:
        detail = conflict_detail(database, cache, conflict_id, context)
        best = detail["suggestions"][0] if detail["suggestions"] else None
        if detail["kind"] not in ("unmapped", "display-drift") or best is None or best["score"] < min_score:
            skipped.append({"id": conflict_id, "why": "没有足够可信的建议" if detail["kind"] in
                            ("unmapped", "display-drift") else "此类冲突需逐条审核"})
            continue
        target = {"system": best["system"], "code": best["code"], "display": best["display"]}
        try:
            result = decide(database, cache, conflict_id,
                            Decision("approve", detail["version"], reviewer, reason, target), follow=False)
        except (Conflict, InvalidRequest) as problem:
            skipped.append({"id": conflict_id, "why": problem.message})
            continue
        approved.append({"id": conflict_id, "target": target})
        for change in result["changes"]:
            into = merged.setdefault(change.scope, TableChange(change.scope, change.version))
            into.version = max(into.version, change.version)
            into.changed_codes = sorted(set(into.changed_codes) | set(change.changed_codes))
    tables = [follow_change(database, cache, c, actor=reviewer, reason=f"批量批准：{reason}").as_dict()
              for c in merged.values()]
    return {"approved": approved, "skipped": skipped, "tables": tables}
