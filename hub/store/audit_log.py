"""The audit trail on the hub database: buffered batch writes, search, retention purge.

Events are queued in memory and written by a background thread every second (or every
500 events), so recording an interaction never takes the database write lock on the
request path. :meth:`AuditLog.flush` writes the queue now (shutdown, tests).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, and_, delete, func, insert, select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from hub.fhir.search_values import range_rule
from hub.store.tables import audit_event, audit_patient

log = logging.getLogger("hub.audit")
_BATCH = 500
PURGE_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class AuditRow:
    """One AuditEvent as stored: its JSON and the columns it is searched by."""

    event_id: str
    recorded: int
    client_id: str
    action: str
    subtype: str
    outcome: str
    resource_type: str
    entity: str
    source_ip: str
    content: bytes
    patients: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuditQuery:
    """A search of the audit trail (all conditions AND; ``dates`` are (prefix, low, high) in µs)."""

    dates: tuple[tuple[str, int, int], ...] = ()
    clients: tuple[str, ...] = ()
    patients: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    subtypes: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    count: int = 20
    offset: int = 0


@dataclass
class AuditLog:
    """Writes, searches and purges AuditEvents."""

    engine: Engine
    #: Events older than this many days are purged (checked hourly by the writer).
    retention_days: int = 180
    flush_seconds: float = 1.0
    _queue: "queue.SimpleQueue[AuditRow | Callable[[], AuditRow]]" = field(default_factory=queue.SimpleQueue)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def record(self, row: AuditRow | Callable[[], AuditRow]) -> None:
        """Queue an event, or a function making it (then built by the writer, off the request path)."""
        self._queue.put(row)
        if self._thread is None:
            self.start()

    def start(self) -> None:
        """Start the background writer (idempotent)."""
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="hub-audit-writer", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the writer and write what is queued."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        purged = 0.0
        while not self._stop.wait(self.flush_seconds):
            self.flush()
            if time.monotonic() - purged > PURGE_EVERY_SECONDS:
                purged = time.monotonic()
                try:
                    self.purge_expired()
                except SQLAlchemyError as exc:
                    log.warning("audit retention purge failed (%s); will retry", type(exc).__name__)

    def purge_expired(self, now: float | None = None) -> int:
        """Delete events past the retention period; how many were deleted."""
        cutoff = (now if now is not None else time.time()) - self.retention_days * 86400
        return self.purge(int(cutoff * 1_000_000))

    def flush(self) -> int:
        """Write every queued event now; how many were written."""
        written = 0
        with self._lock:
            while True:
                batch: list[AuditRow] = []
                while len(batch) < _BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    try:
                        batch.append(item if isinstance(item, AuditRow) else item())
                    except Exception:  # a bug in building one event must not stop the writer
                        log.exception("an audit event could not be built")
                if not batch:
                    return written
                try:
                    self._write(batch)
                    written += len(batch)
                except OperationalError as exc:  # the database is away: keep them for the next attempt
                    log.error("audit events not written yet (%s); retrying", type(exc).__name__)
                    for row in batch:
                        self._queue.put(row)
                    return written
                except SQLAlchemyError:  # one bad event must not block the trail: write them one by one
                    written += self._write_each(batch)

    def _write_each(self, batch: Sequence[AuditRow]) -> int:
        written = 0
        for row in batch:
            try:
                self._write([row])
                written += 1
            except SQLAlchemyError as exc:
                log.error("audit event %s of %s could not be stored (%s)", row.event_id, row.client_id,
                          type(exc).__name__)
        return written

    def _write(self, batch: Sequence[AuditRow]) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(audit_event), [
                {"event_id": r.event_id, "recorded": r.recorded, "client_id": r.client_id[:64], "action": r.action,
                 "subtype": r.subtype[:32], "outcome": r.outcome, "resource_type": r.resource_type[:64],
                 "entity": r.entity[:200], "source_ip": r.source_ip[:64], "content": r.content.decode()}
                for r in batch
            ])
            patients = [{"event_id": r.event_id, "patient_id": p[:64]} for r in batch for p in r.patients]
            if patients:
                connection.execute(insert(audit_patient), patients)

    # -- reading -------------------------------------------------------------

    def search(self, query: AuditQuery) -> tuple[list[tuple[str, bytes]], int]:
        """One page of matching events (id and JSON, newest first) and the number of all matches."""
        where = self._conditions(query)
        with self.engine.connect() as connection:
            total = connection.execute(select(func.count()).select_from(audit_event).where(where)).scalar_one()
            rows = connection.execute(
                select(audit_event.c.event_id, audit_event.c.content).where(where)
                .order_by(audit_event.c.recorded.desc(), audit_event.c.audit_pk.desc())
                .limit(query.count).offset(query.offset)
            ).all()
        return [(r.event_id, r.content.encode()) for r in rows], int(total)

    def read(self, event_id: str) -> bytes | None:
        """One event's JSON, or None."""
        with self.engine.connect() as connection:
            content = connection.execute(
                select(audit_event.c.content).where(audit_event.c.event_id == event_id[:64])
            ).scalar_one_or_none()
        return content.encode() if content is not None else None

    @staticmethod
    def _conditions(query: AuditQuery):  # type: ignore[no-untyped-def]
        col = audit_event.c
        conditions = [
            range_rule(prefix, col.recorded, col.recorded, low, high, both=and_, either=lambda a, b: a | b)
            for prefix, low, high in query.dates
        ]
        for column, values in ((col.client_id, query.clients), (col.entity, query.entities),
                               (col.action, query.actions), (col.subtype, query.subtypes),
                               (col.outcome, query.outcomes), (col.source_ip, query.addresses)):
            if values:
                conditions.append(column.in_(values))
        if query.patients:
            conditions.append(col.event_id.in_(
                select(audit_patient.c.event_id).where(audit_patient.c.patient_id.in_(query.patients))
            ))
        return and_(True, *conditions)

    def purge(self, before: int) -> int:
        """Delete events recorded before ``before`` (µs since 1970); how many were deleted."""
        with self.engine.begin() as connection:
            old = select(audit_event.c.event_id).where(audit_event.c.recorded < before)
            connection.execute(delete(audit_patient).where(audit_patient.c.event_id.in_(old)))
            return int(connection.execute(delete(audit_event).where(audit_event.c.recorded < before)).rowcount)
