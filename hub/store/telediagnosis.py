"""The tele-diagnosis tables: configuration versions, reading-task state, readers' shifts and loads,
and the intake queue. SQL only; routing and the task life cycle are in :mod:`hub.telediagnosis`.

Every change of a task's state is one conditional ``UPDATE`` (``WHERE state IN …``): the row lock it
takes on PostgreSQL, and SQLite's single writer, make two claims of one task end with one winner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, and_, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from hub.fhir.instants import aware
from hub.store.tele_tables import tele_config, tele_intake, tele_reader, tele_task

#: States of a task not yet finished.
OPEN_STATES = ("queued", "assigned", "claimed")
_TIMES = ("created", "deadline", "next_escalation", "claimed_at", "claim_expires", "completed_at")


@dataclass(frozen=True)
class ReaderLoad:
    """A reader's shift and load."""

    role_id: str
    on_shift: bool = False
    shift_start: datetime | None = None
    open_tasks: int = 0
    shift_assigned: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"on_shift": self.on_shift, "shift_start": self.shift_start.isoformat() if self.shift_start else None,
                "open_tasks": self.open_tasks, "shift_assigned": self.shift_assigned}


class TeleStore:
    """The tele-diagnosis tables inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- configuration -------------------------------------------------------------------------

    def config(self) -> tuple[int, dict[str, Any]] | None:
        """The configuration in force (its row number and JSON form), or None."""
        row = self.connection.execute(
            select(tele_config.c.config_pk, tele_config.c.content).order_by(tele_config.c.config_pk.desc()).limit(1)
        ).first()
        return (int(row.config_pk), orjson.loads(row.content)) if row is not None else None

    def config_stamp(self) -> int:
        """The row number of the configuration in force (0: none)."""
        return int(self.connection.execute(select(func.coalesce(func.max(tele_config.c.config_pk), 0))).scalar_one())

    def save_config(self, content: dict[str, Any], actor: str, now: datetime) -> None:
        """Put a checked configuration in force (earlier versions are kept)."""
        self.connection.execute(insert(tele_config).values(
            version=content["version"], content=orjson.dumps(content).decode(), loaded_at=now, loaded_by=actor))

    def config_history(self) -> list[dict[str, Any]]:
        """Every version loaded, newest first."""
        rows = self.connection.execute(select(tele_config.c.version, tele_config.c.loaded_at, tele_config.c.loaded_by)
                                       .order_by(tele_config.c.config_pk.desc()))
        return [{"version": r.version, "loaded_at": aware(r.loaded_at).isoformat(), "loaded_by": r.loaded_by}
                for r in rows]

    # -- tasks -----------------------------------------------------------------------------------

    def add_task(self, values: dict[str, Any]) -> bool:
        """Record a new task; False when its exam has one already (another process took it in first)."""
        try:
            with self.connection.begin_nested():
                self.connection.execute(insert(tele_task).values(**values))
        except IntegrityError:
            return False
        return True

    def lock(self, task_id: str) -> None:
        """Hold a task's row until the transaction ends (PostgreSQL; SQLite has one writer anyway), before its
        Task is changed without a change of state."""
        if not self._sqlite:
            self.connection.execute(select(tele_task.c.task_id).where(tele_task.c.task_id == task_id)
                                    .with_for_update())

    def task(self, task_id: str) -> dict[str, Any] | None:
        """A task's row."""
        row = self.connection.execute(select(tele_task).where(tele_task.c.task_id == task_id)).first()
        return _row(row) if row is not None else None

    def task_for(self, focus: Iterable[str]) -> dict[str, Any] | None:
        """The task reading one of these exams or orders (its focus or its order)."""
        refs = sorted(set(focus))
        if not refs:
            return None
        row = self.connection.execute(select(tele_task).where(
            or_(tele_task.c.focus.in_(refs), tele_task.c.order_ref.in_(refs))).limit(1)).first()
        return _row(row) if row is not None else None

    def change(self, task_id: str, states: Sequence[str], values: dict[str, Any], *,
               expect: dict[str, Any] | None = None) -> bool:
        """Set ``values`` on the task if it is in one of ``states`` and its columns hold what ``expect`` says;
        False when it is not (someone else changed it first).

        The row is locked by its primary key first and compared here: an ``UPDATE … WHERE reader = … AND
        state = …`` lets PostgreSQL's planner pick the reader index with stale statistics (thousands of rows
        scanned per change after a bulk load).
        """
        query = select(tele_task.c.state, *(tele_task.c[n] for n in expect or {})).where(tele_task.c.task_id == task_id)
        if not self._sqlite:
            query = query.with_for_update()
        row = self.connection.execute(query).first()
        if row is None or row.state not in states or any(row._mapping[n] != v for n, v in (expect or {}).items()):
            return False
        self.connection.execute(update(tele_task).where(tele_task.c.task_id == task_id).values(**values))
        return True

    def due(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Open tasks whose next SLA step or claim expiry has come, soonest first."""
        escalations = select(tele_task).where(tele_task.c.next_escalation <= now) \
            .order_by(tele_task.c.next_escalation).limit(limit)
        expired = select(tele_task).where(tele_task.c.claim_expires <= now) \
            .order_by(tele_task.c.claim_expires).limit(limit)
        found = {r.task_id: _row(r) for r in self.connection.execute(escalations)}
        found.update({r.task_id: _row(r) for r in self.connection.execute(expired)})
        return list(found.values())

    def queued(self, center_ids: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """Tasks waiting at these centers for a reader, most urgent first."""
        rows = self.connection.execute(select(tele_task).where(
            tele_task.c.state == "queued", tele_task.c.center_id.in_(list(center_ids)))
            .order_by(tele_task.c.deadline).limit(limit))
        return [_row(r) for r in rows]

    def worklist(self, *, center_ids: Sequence[str] | None = None, reader: str | None = None,
                 states: Sequence[str] = OPEN_STATES, limit: int = 200) -> list[dict[str, Any]]:
        """Open tasks of some centers (or of one reader), soonest deadline first (the caller orders by priority)."""
        query = select(tele_task).where(tele_task.c.state.in_(list(states)))
        if center_ids is not None:
            query = query.where(tele_task.c.center_id.in_(list(center_ids)))
        if reader is not None:
            query = query.where(tele_task.c.reader == reader)
        return [_row(r) for r in self.connection.execute(query.order_by(tele_task.c.deadline).limit(limit))]

    def tasks_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Tasks created in [start, end)."""
        start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)  # as stored (SQLite keeps no zone)
        rows = self.connection.execute(select(tele_task).where(tele_task.c.created >= start,
                                                               tele_task.c.created < end))
        return [_row(r) for r in rows]

    def site_totals(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per site and center, of the tasks created in [start, end): how many, reported, reported by their
        deadline, escalated (aggregated in SQL: the dashboards read this, not every task)."""
        t = tele_task.c
        done = and_(t.state == "completed", t.completed_at.is_not(None))
        query = (select(t.site, t.center_id, func.count().label("volume"),
                        func.sum(case((done, 1), else_=0)).label("completed"),
                        func.sum(case((and_(done, t.completed_at <= t.deadline), 1), else_=0)).label("met"),
                        func.sum(case((t.sla_level >= 2, 1), else_=0)).label("escalated"))
                 .where(*self._created_between(start, end)).group_by(t.site, t.center_id))
        return [{k: (int(v) if k not in ("site", "center_id") else v) for k, v in r._mapping.items()}
                for r in self.connection.execute(query)]

    def turnarounds(self, start: datetime, end: datetime) -> list[tuple[str, str, list[float]]]:
        """Per site and center, the minutes from intake to report of the tasks created in [start, end) and
        reported (one row per pair: an array on PostgreSQL, a joined list on SQLite)."""
        t = tele_task.c
        if self._sqlite:  # instants stored as text: julianday() reads them
            minutes = (func.julianday(t.completed_at) - func.julianday(t.created)) * 1440
            gathered = func.group_concat(minutes)
        else:
            gathered = func.array_agg(func.extract("epoch", t.completed_at - t.created) / 60)
        query = (select(t.site, t.center_id, gathered)
                 .where(*self._created_between(start, end), t.state == "completed", t.completed_at.is_not(None))
                 .group_by(t.site, t.center_id))
        out = []
        for site, center, values in self.connection.execute(query):
            listed = values.split(",") if isinstance(values, str) else values or []
            out.append((site, center, [float(v) for v in listed]))
        return out

    @staticmethod
    def _created_between(start: datetime, end: datetime) -> list[Any]:
        start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)  # as stored (SQLite keeps no zone)
        return [tele_task.c.created >= start, tele_task.c.created < end]

    def open_tasks(self) -> list[dict[str, Any]]:
        """Every open task (the backlog)."""
        rows = self.connection.execute(select(tele_task.c.task_id, tele_task.c.site, tele_task.c.center_id,
                                              tele_task.c.modality, tele_task.c.priority, tele_task.c.state,
                                              tele_task.c.deadline)
                                       .where(tele_task.c.state.in_(list(OPEN_STATES))))
        return [_row(r) for r in rows]

    # -- readers -----------------------------------------------------------------------------------

    def loads(self, role_ids: Iterable[str]) -> dict[str, ReaderLoad]:
        """The shift and load of these readers (a reader never seen is off shift with no load)."""
        ids = sorted(set(role_ids))
        out = {i: ReaderLoad(i) for i in ids}
        for start in range(0, len(ids), 500):
            for r in self.connection.execute(select(tele_reader).where(tele_reader.c.role_id.in_(ids[start:start + 500]))):
                out[r.role_id] = ReaderLoad(r.role_id, bool(r.on_shift), aware(r.shift_start) if r.shift_start else None,
                                            int(r.open_tasks), int(r.shift_assigned))
        return out

    def _ensure_reader(self, role_id: str) -> None:
        exists = self.connection.execute(select(tele_reader.c.role_id).where(tele_reader.c.role_id == role_id)).first()
        if exists is None:
            self.connection.execute(insert(tele_reader).values(role_id=role_id, on_shift=False, shift_start=None,
                                                               open_tasks=0, shift_assigned=0))

    def add_load(self, role_id: str, *, opened: int = 0, assigned: int = 0) -> None:
        """Move a reader's load: ``opened`` open tasks more (or fewer), ``assigned`` more given this shift."""
        floor = func.max if self._sqlite else func.greatest
        changed = self.connection.execute(update(tele_reader).where(tele_reader.c.role_id == role_id).values(
            open_tasks=floor(tele_reader.c.open_tasks + opened, 0),
            shift_assigned=tele_reader.c.shift_assigned + assigned)).rowcount
        if not changed:  # a reader never seen (no shift started through the hub)
            self.connection.execute(insert(tele_reader).values(role_id=role_id, on_shift=False, shift_start=None,
                                                               open_tasks=max(opened, 0), shift_assigned=assigned))

    def set_shift(self, role_id: str, on_shift: bool, now: datetime) -> None:
        """Start (the cumulative load starts again from zero) or end a reader's shift."""
        self._ensure_reader(role_id)
        values: dict[str, Any] = {"on_shift": on_shift}
        if on_shift:
            values.update(shift_start=now, shift_assigned=0)
        self.connection.execute(update(tele_reader).where(tele_reader.c.role_id == role_id).values(**values))

    def recount(self) -> int:
        """Set every reader's open-task count from the tasks (a repair; returns the readers counted)."""
        counts = dict(self.connection.execute(
            select(tele_task.c.reader, func.count()).where(tele_task.c.state.in_(["assigned", "claimed"]),
                                                           tele_task.c.reader.is_not(None))
            .group_by(tele_task.c.reader)).all())
        known = {r for (r,) in self.connection.execute(select(tele_reader.c.role_id))}
        for role_id in sorted(known | set(counts)):
            self._ensure_reader(role_id)
            self.connection.execute(update(tele_reader).where(tele_reader.c.role_id == role_id)
                                    .values(open_tasks=int(counts.get(role_id, 0))))
        return len(known | set(counts))

    @property
    def _sqlite(self) -> bool:
        return self.connection.dialect.name == "sqlite"

    # -- intake queue ------------------------------------------------------------------------------

    def claim_intake(self, limit: int) -> list[tuple[int, str, str]]:
        """The oldest exams waiting for intake ``(pk, type, id)`` (locked against other workers on PostgreSQL)."""
        query = select(tele_intake.c.intake_pk, tele_intake.c.resource_type, tele_intake.c.res_id) \
            .order_by(tele_intake.c.intake_pk).limit(limit)
        if not self._sqlite:
            query = query.with_for_update(skip_locked=True)
        return [(int(r.intake_pk), r.resource_type, r.res_id) for r in self.connection.execute(query)]

    def remove_intake(self, pks: Sequence[int]) -> None:
        """Forget exams taken in."""
        for start in range(0, len(pks), 500):
            self.connection.execute(delete(tele_intake).where(tele_intake.c.intake_pk.in_(pks[start:start + 500])))

    def clear_intake(self) -> None:
        """Forget every exam waiting (tele-diagnosis is not configured)."""
        self.connection.execute(delete(tele_intake))


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in _TIMES:
        if out.get(name) is not None:
            out[name] = aware(out[name])
    return out
