"""Mapping conflicts and review decisions (SQL), on one connection.

Findings from ingest batches are added up per (kind, system, code, detail); conflicts
found in the mapping tables themselves are synchronized after each load or decision
(new ones opened, vanished ones ``resolved``). A decision updates a conflict only at the
version the reviewer saw (optimistic locking).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update

from hub.privacy import mask_text
from hub.store.tables import mapping_conflict, mapping_decision

OPEN, RESOLVED = "open", "resolved"
DECIDED = ("approved", "rejected", "not-applicable")
SORTS = {
    "occurrences": mapping_conflict.c.occurrences, "last_seen": mapping_conflict.c.last_seen,
    "first_seen": mapping_conflict.c.first_seen, "kind": mapping_conflict.c.kind,
    "code": mapping_conflict.c.code, "id": mapping_conflict.c.conflict_id,
}
MAX_SAMPLES = 5


@dataclass(frozen=True)
class Observed:
    """Occurrences of one conflict key seen together (an ingest batch, or a table check)."""

    kind: str
    system: str
    code: str
    detail: str
    element: str
    display: str
    count: int
    samples: Sequence[str] = ()
    sources: Sequence[str] = ()
    institutions: Sequence[str] = ()
    info: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConflictFilter:
    """Which conflicts a list or a bulk decision covers."""

    kind: str | None = None
    status: str | None = OPEN
    element: str | None = None
    source: str | None = None
    institution: str | None = None
    text: str | None = None


def _merge(old: str, new: Iterable[str], limit: int | None = None) -> str:
    values = list(json.loads(old))
    for value in new:
        if value not in values and (limit is None or len(values) < limit):
            values.append(value)
    return json.dumps(values, ensure_ascii=False)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class ConflictStore:
    """The conflicts and decisions tables."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _find(self, item: Observed) -> Any:
        c = mapping_conflict.c
        return self.connection.execute(select(mapping_conflict).where(
            c.kind == item.kind, c.system == item.system, c.code == item.code, c.detail == item.detail)).first()

    def record_findings(self, findings: Iterable[Any], source_id: str, institution: str, now: datetime, *,
                        add_occurrences: bool = True) -> None:
        """Record what one source's normalizer could not answer (each a :class:`hub.coding.normalizer.Finding`)."""
        self.record([Observed(f.kind, f.system, f.code, f.detail, f.system.rpartition(":")[2], f.display, f.count,
                              f.samples, (source_id,), (institution,)) for f in findings], now,
                    add_occurrences=add_occurrences)

    def record(self, observed: Iterable[Observed], now: datetime, *, add_occurrences: bool = True) -> None:
        """Add occurrences; a conflict that had resolved itself opens again (decided ones stay decided).

        ``add_occurrences=False`` (a re-normalization meeting data already counted at ingest) only
        creates the conflicts that are missing and reopens resolved ones. Displays and samples are
        masked: a source that writes an ID or phone number into a lab item's name must not put it in
        front of every reviewer."""
        for item in observed:
            item = replace(item, system=item.system[:300], code=item.code[:200], detail=item.detail[:300],
                           display=mask_text(item.display)[:500], samples=[mask_text(s)[:100] for s in item.samples])
            row = self._find(item)
            if row is None:
                self.connection.execute(insert(mapping_conflict).values(
                    kind=item.kind, system=item.system, code=item.code, detail=item.detail, element=item.element,
                    display=item.display[:500], status=OPEN, occurrences=item.count, first_seen=now, last_seen=now,
                    samples=json.dumps(list(item.samples)[:MAX_SAMPLES], ensure_ascii=False),
                    sources=json.dumps(sorted(set(item.sources)), ensure_ascii=False),
                    institutions=json.dumps(sorted(set(item.institutions)), ensure_ascii=False),
                    info=json.dumps(item.info or {}, ensure_ascii=False), version=1))
                continue
            status = row.status
            if status == RESOLVED:
                status = OPEN
            if not add_occurrences:
                if status != row.status:
                    self.connection.execute(update(mapping_conflict).where(
                        mapping_conflict.c.conflict_id == row.conflict_id).values(status=status,
                                                                                  version=row.version + 1))
                continue
            self.connection.execute(update(mapping_conflict).where(
                mapping_conflict.c.conflict_id == row.conflict_id).values(
                occurrences=row.occurrences + item.count, last_seen=now, status=status,
                display=item.display[:500] or row.display,
                samples=_merge(row.samples, item.samples, MAX_SAMPLES),
                sources=_merge(row.sources, item.sources), institutions=_merge(row.institutions, item.institutions),
                info=json.dumps(item.info, ensure_ascii=False) if item.info is not None else row.info,
                version=row.version + (1 if status != row.status else 0)))

    def sync(self, kinds: Sequence[str], current: Sequence[Observed], now: datetime) -> dict[str, int]:
        """Make the open conflicts of ``kinds`` found in the tables exactly ``current``."""
        c = mapping_conflict.c
        keys = {(o.kind, o.system, o.code, o.detail) for o in current}
        opened = 0
        for item in current:
            row = self._find(item)
            if row is None or row.status != OPEN:
                opened += 1
            if row is None:
                self.record([item], now)
            else:
                values = {
                    "status": OPEN if row.status in (OPEN, RESOLVED) else row.status,
                    "display": mask_text(item.display)[:500] or row.display,
                    "sources": json.dumps(sorted(set(item.sources)), ensure_ascii=False),
                    "institutions": json.dumps(sorted(set(item.institutions)), ensure_ascii=False),
                    "info": json.dumps(item.info or {}, ensure_ascii=False),
                }
                if any(values[name] != getattr(row, name) for name in values):
                    # what the reviewer saw changed (an inconsistency now spans another table…): a new version
                    self.connection.execute(update(mapping_conflict).where(c.conflict_id == row.conflict_id)
                                            .values(**values, version=row.version + 1))
        resolved = 0
        for row in self.connection.execute(select(c.conflict_id, c.kind, c.system, c.code, c.detail, c.version)
                                           .where(c.kind.in_(kinds), c.status == OPEN)).all():
            if (row.kind, row.system, row.code, row.detail) not in keys:
                self.connection.execute(update(mapping_conflict).where(c.conflict_id == row.conflict_id).values(
                    status=RESOLVED, version=row.version + 1))
                resolved += 1
        return {"opened": opened, "resolved": resolved}

    def resolve_codes(self, kinds: Sequence[str], codes: Iterable[tuple[str, str]]) -> int:
        """Mark the open conflicts of ``kinds`` about these (system, code) pairs resolved."""
        c = mapping_conflict.c
        count = 0
        for system, code in codes:
            result = self.connection.execute(update(mapping_conflict).where(
                c.kind.in_(kinds), c.system == system, c.code == code, c.status == OPEN).values(
                status=RESOLVED, version=c.version + 1))
            count += result.rowcount or 0
        return count

    def _where(self, selection: ConflictFilter) -> list[Any]:
        c = mapping_conflict.c
        where: list[Any] = []
        if selection.status:
            where.append(c.status.in_(selection.status.split(",")))
        if selection.kind:
            where.append(c.kind.in_(selection.kind.split(",")))
        if selection.element:
            where.append(c.element == selection.element)
        if selection.source:
            where.append(c.sources.like(_like(json.dumps(selection.source)), escape="\\"))
        if selection.institution:
            where.append(c.institutions.like(_like(json.dumps(selection.institution)), escape="\\"))
        if selection.text:
            pattern = _like(selection.text)
            where.append(or_(c.code.like(pattern, escape="\\"), c.display.like(pattern, escape="\\")))
        return where

    def list(self, selection: ConflictFilter, *, sort: str = "-occurrences", offset: int = 0,
             limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """One page of conflicts and the total."""
        where = self._where(selection)
        descending = sort.startswith("-")
        column = SORTS.get(sort.lstrip("-"), mapping_conflict.c.occurrences)
        order = [column.desc() if descending else column.asc(), mapping_conflict.c.conflict_id.asc()]
        rows = self.connection.execute(select(mapping_conflict).where(*where).order_by(*order)
                                       .offset(offset).limit(limit)).all()
        total = self.connection.execute(select(func.count()).select_from(mapping_conflict)
                                        .where(*where)).scalar_one()
        return [_as_dict(r) for r in rows], int(total)

    def ids(self, selection: ConflictFilter, limit: int) -> list[int]:
        """The ids of the conflicts ``selection`` covers (most frequent first)."""
        return [r[0] for r in self.connection.execute(
            select(mapping_conflict.c.conflict_id).where(*self._where(selection))
            .order_by(mapping_conflict.c.occurrences.desc()).limit(limit)).all()]

    def get(self, conflict_id: int) -> dict[str, Any] | None:
        """One conflict, or None."""
        row = self.connection.execute(select(mapping_conflict).where(
            mapping_conflict.c.conflict_id == conflict_id)).first()
        return _as_dict(row) if row is not None else None

    def decide(self, conflict_id: int, seen_version: int, status: str, reviewer: str, reason: str,
               now: datetime) -> bool:
        """Record a decision if the conflict is still at ``seen_version`` (False: someone decided first)."""
        c = mapping_conflict.c
        result = self.connection.execute(update(mapping_conflict).where(
            c.conflict_id == conflict_id, c.version == seen_version).values(
            status=status, decided_by=reviewer, decided_at=now, reason=reason, version=seen_version + 1))
        return (result.rowcount or 0) == 1

    def log_decision(self, conflict_id: int, action: str, target: dict[str, Any], result: dict[str, Any],
                     reviewer: str, reason: str, now: datetime) -> None:
        """Keep a decision in the history."""
        self.connection.execute(insert(mapping_decision).values(
            conflict_id=conflict_id, action=action, target=json.dumps(target, ensure_ascii=False),
            result=json.dumps(result, ensure_ascii=False), reviewer=reviewer, reason=reason, decided_at=now))

    def decisions(self, conflict_id: int) -> list[dict[str, Any]]:
        """The decisions on one conflict, oldest first."""
        rows = self.connection.execute(select(mapping_decision).where(
            mapping_decision.c.conflict_id == conflict_id).order_by(mapping_decision.c.decision_id)).all()
        return [{"action": r.action, "target": json.loads(r.target), "result": json.loads(r.result),
                 "reviewer": r.reviewer, "reason": r.reason, "decided_at": r.decided_at.isoformat()} for r in rows]

    def set_result(self, conflict_id: int, result: dict[str, Any]) -> None:
        """Add what a decision changed (re-normalization counts) to its latest log entry."""
        latest = self.connection.execute(select(func.max(mapping_decision.c.decision_id)).where(
            mapping_decision.c.conflict_id == conflict_id)).scalar_one()
        if latest is not None:
            self.connection.execute(update(mapping_decision).where(mapping_decision.c.decision_id == latest)
                                    .values(result=json.dumps(result, ensure_ascii=False)))


def _as_dict(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in ("samples", "sources", "institutions", "info"):
        out[name] = json.loads(out[name])
    for name in ("first_seen", "last_seen", "decided_at"):
        if out.get(name) is not None:
            out[name] = out[name].isoformat()
    out["id"] = out.pop("conflict_id")
    return out
