"""What the ingest pipeline keeps between batches and runs: watermarks, runs, locks, quarantine.

Every method runs in its caller's transaction: a batch's watermark, counts and
quarantined rows commit together with the resources they cover.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.privacy import DataKeyring
from hub.store.tables import ingest_lock, ingest_run, ingest_watermark, quarantine

#: AES-GCM context of quarantined raw rows.
QUARANTINE_CONTEXT = "quarantine"
COUNTS = ("records_read", "created", "updated", "unchanged", "quarantined")


def _run(row: Any) -> dict[str, Any]:
    return dict(row._mapping)


class IngestState:
    """Watermarks, runs, the per-source lock and the quarantine, on one connection."""

    def __init__(self, connection: Connection, keyring: DataKeyring) -> None:
        self.connection = connection
        self._keyring = keyring

    # -- watermarks ------------------------------------------------------

    def positions(self, source_id: str) -> dict[str, dict[str, Any]]:
        """The stored position (JSON) of each record kind of a source."""
        rows = self.connection.execute(
            select(ingest_watermark.c.record_kind, ingest_watermark.c.position).where(
                ingest_watermark.c.source_id == source_id
            )
        )
        return {row.record_kind: json.loads(row.position) for row in rows}

    def save_position(self, source_id: str, kind: str, position: Mapping[str, Any], now: datetime) -> None:
        """Move a kind's watermark (in the transaction of the data it covers)."""
        text = json.dumps(dict(position), ensure_ascii=False)
        result = self.connection.execute(
            update(ingest_watermark)
            .where(ingest_watermark.c.source_id == source_id, ingest_watermark.c.record_kind == kind)
            .values(position=text, updated=now)
        )
        if not result.rowcount:
            self.connection.execute(
                insert(ingest_watermark).values(source_id=source_id, record_kind=kind, position=text, updated=now)
            )

    def reset_positions(self, source_id: str, kinds: Iterable[str] | None = None) -> int:
        """Forget watermarks (the next run reads the source from the start); how many were reset."""
        query = ingest_watermark.delete().where(ingest_watermark.c.source_id == source_id)
        if kinds is not None:
            query = query.where(ingest_watermark.c.record_kind.in_(list(kinds)))
        return int(self.connection.execute(query).rowcount or 0)

    # -- runs --------------------------------------------------------------

    def start_run(self, source_id: str, trigger: str, holder: str, now: datetime) -> int:
        """A new run in state ``running``; its id."""
        result = self.connection.execute(
            insert(ingest_run).values(
                source_id=source_id, trigger=trigger, status="running", started=now, heartbeat=now, holder=holder,
                attempts=1, **dict.fromkeys(COUNTS, 0),
            )
        )
        return int(result.inserted_primary_key[0])

    def add_counts(self, run_id: int, counts: Mapping[str, int], now: datetime, attempts: int | None = None) -> None:
        """Add a batch's counts to its run (and beat its heart)."""
        values: dict[str, Any] = {name: ingest_run.c[name] + int(counts.get(name, 0)) for name in COUNTS}
        values["heartbeat"] = now
        if attempts is not None:
            values["attempts"] = attempts
        self.connection.execute(update(ingest_run).where(ingest_run.c.run_id == run_id).values(**values))

    def finish_run(self, run_id: int, status: str, now: datetime, error: str | None = None,
                   attempts: int | None = None) -> None:
        """Close a run: succeeded, failed or interrupted (with its connection attempts, when known)."""
        values: dict[str, Any] = {"status": status, "finished": now, "heartbeat": now, "error": error}
        if attempts is not None:
            values["attempts"] = attempts
        self.connection.execute(update(ingest_run).where(ingest_run.c.run_id == run_id).values(**values))

    def interrupt_stale(self, source_id: str, current_run: int, now: datetime) -> int:
        """Pull runs of the source still marked running but not holding its lock: their process died.
        (An MLLP listener's run holds no lock: it is not one of them.)"""
        result = self.connection.execute(
            update(ingest_run)
            .where(ingest_run.c.source_id == source_id, ingest_run.c.status == "running",
                   ingest_run.c.run_id != current_run, ingest_run.c.trigger != "mllp")
            .values(status="interrupted", finished=now,
                    error="the process running it stopped (killed or crashed); the next run resumed from its "
                          "last committed batch")
        )
        return int(result.rowcount or 0)

    def run(self, run_id: int) -> dict[str, Any] | None:
        """One run, or None."""
        row = self.connection.execute(select(ingest_run).where(ingest_run.c.run_id == run_id)).first()
        return _run(row) if row is not None else None

    def runs(self, source_id: str | None = None, limit: int = 50,
             sources: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Runs newest first (of one source, or of ``sources``)."""
        query = select(ingest_run).order_by(ingest_run.c.run_id.desc()).limit(limit)
        if source_id is not None:
            query = query.where(ingest_run.c.source_id == source_id)
        if sources is not None:
            query = query.where(ingest_run.c.source_id.in_(sorted(sources)))
        return [_run(row) for row in self.connection.execute(query)]

    # -- the lock ----------------------------------------------------------

    def acquire(self, source_id: str, run_id: int, holder: str, now: datetime, lease_seconds: float) -> bool:
        """Take the source's lock for ``run_id``, or take over a lease that expired. False if held."""
        expires = now + timedelta(seconds=lease_seconds)
        try:
            with self.connection.begin_nested():
                self.connection.execute(
                    insert(ingest_lock).values(source_id=source_id, run_id=run_id, holder=holder, expires=expires)
                )
            return True
        except IntegrityError:
            pass
        result = self.connection.execute(
            update(ingest_lock)
            .where(ingest_lock.c.source_id == source_id, ingest_lock.c.expires < now)
            .values(run_id=run_id, holder=holder, expires=expires)
        )
        return bool(result.rowcount)

    def take_over(self, source_id: str, dead_holder: str, run_id: int, holder: str, now: datetime,
                  lease_seconds: float) -> bool:
        """Take the lock from a holder known to be dead (a process of this host that no longer exists)."""
        result = self.connection.execute(
            update(ingest_lock)
            .where(ingest_lock.c.source_id == source_id, ingest_lock.c.holder == dead_holder)
            .values(run_id=run_id, holder=holder, expires=now + timedelta(seconds=lease_seconds))
        )
        return bool(result.rowcount)

    def lock_holder(self, source_id: str) -> dict[str, Any] | None:
        """Who holds a source's lock (run id, holder, expiry), or None."""
        row = self.connection.execute(select(ingest_lock).where(ingest_lock.c.source_id == source_id)).first()
        return dict(row._mapping) if row is not None else None

    def renew(self, source_id: str, run_id: int, now: datetime, lease_seconds: float) -> bool:
        """Extend the lease; False when the run no longer holds the lock (it must stop)."""
        result = self.connection.execute(
            update(ingest_lock)
            .where(ingest_lock.c.source_id == source_id, ingest_lock.c.run_id == run_id)
            .values(expires=now + timedelta(seconds=lease_seconds))
        )
        return bool(result.rowcount)

    def release(self, source_id: str, run_id: int) -> None:
        """Give the lock back."""
        self.connection.execute(
            ingest_lock.delete().where(ingest_lock.c.source_id == source_id, ingest_lock.c.run_id == run_id)
        )

    # -- quarantine -----------------------------------------------------------

    def quarantine(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Quarantine rows (dicts: source_id, run_id, record_kind, source_key, raw, reason).

        An open entry of the same source row is replaced: a row is quarantined once, with its latest reason.
        """
        if not rows:
            return
        by_kind: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            by_kind.setdefault((row["source_id"], row["record_kind"]), []).append(row["source_key"])
        for (source_id, kind), keys in by_kind.items():
            self._close(source_id, kind, keys, "superseded", now)
        self.connection.execute(insert(quarantine), [
            {**row, "source_key": row["source_key"][:200], "status": "open", "created": now,
             "raw": self._keyring.encrypt(json.dumps(row["raw"], ensure_ascii=False), QUARANTINE_CONTEXT)}
            for row in rows
        ])

    def resolve(self, source_id: str, kind: str, keys: list[str], now: datetime) -> int:
        """Close the open entries of rows that have now been stored."""
        return self._close(source_id, kind, keys, "resolved", now)

    def _close(self, source_id: str, kind: str, keys: list[str], status: str, now: datetime) -> int:
        closed = 0
        for start in range(0, len(keys), 500):
            result = self.connection.execute(
                update(quarantine)
                .where(quarantine.c.source_id == source_id, quarantine.c.status == "open",
                       quarantine.c.record_kind == kind,
                       quarantine.c.source_key.in_([k[:200] for k in keys[start:start + 500]]))
                .values(status=status, resolved=now)
            )
            closed += int(result.rowcount or 0)
        return closed

    def has_open(self, source_id: str) -> bool:
        """Does the source have open quarantine entries (else resolving is skipped)?"""
        query = select(quarantine.c.q_id).where(quarantine.c.source_id == source_id, quarantine.c.status == "open")
        return self.connection.execute(query.limit(1)).first() is not None

    def entries(self, source_id: str | None = None, status: str | None = "open", after: int = 0,
                limit: int = 100, sources: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Quarantine entries by id (raw rows decrypted)."""
        query = select(quarantine).where(quarantine.c.q_id > after).order_by(quarantine.c.q_id).limit(limit)
        conditions = []
        if source_id is not None:
            conditions.append(quarantine.c.source_id == source_id)
        if sources is not None:
            conditions.append(quarantine.c.source_id.in_(sorted(sources)))
        if status is not None:
            conditions.append(quarantine.c.status == status)
        if conditions:
            query = query.where(and_(*conditions))
        found = []
        for row in self.connection.execute(query):
            entry = dict(row._mapping)
            entry["raw"] = json.loads(self._keyring.decrypt(entry["raw"], QUARANTINE_CONTEXT))
            found.append(entry)
        return found

    def discard(self, q_ids: list[int], now: datetime) -> int:
        """Mark entries as deliberately dropped by data-governance staff."""
        result = self.connection.execute(
            update(quarantine).where(quarantine.c.q_id.in_(q_ids), quarantine.c.status == "open")
            .values(status="discarded", resolved=now)
        )
        return int(result.rowcount or 0)

    def open_counts(self) -> dict[str, int]:
        """Open entries per source."""
        return open_quarantine_counts(self.connection)


def open_quarantine_counts(connection: Connection) -> dict[str, int]:
    """Open quarantine entries per source (the sources list, the dashboards and the demo's summary)."""
    rows = connection.execute(select(quarantine.c.source_id, func.count()).where(quarantine.c.status == "open")
                              .group_by(quarantine.c.source_id))
    return {row[0]: int(row[1]) for row in rows}
