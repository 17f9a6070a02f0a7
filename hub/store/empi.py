"""The EMPI's tables: persons, source records and their blocking keys, review items, history, queue.

SQL only; the matching and its decisions are in :mod:`hub.empi`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update

from hub.store.index_rows import insert_rows
from hub.store.tables import empi_block, empi_event, empi_no_match, empi_person, empi_queue, empi_record, empi_review


@dataclass(frozen=True)
class RecordRow:
    """A source Patient as the EMPI holds it."""

    record_pk: int
    patient_id: str
    person_id: str
    grade: str
    origin: str
    score: float | None
    institution: str
    features: dict[str, Any]


@dataclass(frozen=True)
class PersonRow:
    """A regional person."""

    person_id: str
    regional_id: str | None
    status: str
    merged_into: str | None
    created: datetime
    updated: datetime


_block = empi_block.c
# The candidate lookups (built once: they run for every record the EMPI places).
_BLOCK_RECORDS = select(_block.block_key, _block.record_pk).where(_block.block_key.in_(bindparam("keys", expanding=True)))
_RECORDS_BY_PK = select(empi_record).where(empi_record.c.record_pk.in_(bindparam("pks", expanding=True)))


def _record(row: Any) -> RecordRow:
    return RecordRow(row.record_pk, row.patient_id, row.person_id, row.grade, row.origin, row.score,
                     row.institution, orjson.loads(row.features))


def _person(row: Any) -> PersonRow:
    return PersonRow(row.person_id, row.regional_id, row.status, row.merged_into, row.created, row.updated)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


class EmpiStore:
    """The EMPI tables inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- queue -----------------------------------------------------------------------------

    def queued(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` queued Patient writes: (queue key, patient id)."""
        rows = self.connection.execute(
            select(empi_queue.c.queue_pk, empi_queue.c.patient_id).order_by(empi_queue.c.queue_pk).limit(limit))
        return [(r.queue_pk, r.patient_id) for r in rows]

    def dequeue(self, keys: Sequence[int]) -> None:
        """Drop processed queue entries."""
        for start in range(0, len(keys), 500):
            self.connection.execute(delete(empi_queue).where(empi_queue.c.queue_pk.in_(keys[start:start + 500])))

    def assignments(self) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """Every record's person, and the open review items as (record, candidate person): the state a
        quality measurement compares with the truth."""
        person_of = dict(self.connection.execute(select(empi_record.c.patient_id, empi_record.c.person_id)).all())
        reviews = [(r.patient_id, r.candidate_person) for r in self.connection.execute(
            select(empi_review.c.patient_id, empi_review.c.candidate_person).where(empi_review.c.status == "open"))]
        return person_of, reviews

    def queue_length(self) -> int:
        """How many Patient writes wait for the EMPI."""
        return int(self.connection.execute(select(func.count()).select_from(empi_queue)).scalar_one())

    # -- records ---------------------------------------------------------------------------

    def records(self, patient_ids: Iterable[str]) -> dict[str, RecordRow]:
        """The records of these source Patients."""
        ids = sorted(set(patient_ids))
        found: dict[str, RecordRow] = {}
        for start in range(0, len(ids), 500):
            rows = self.connection.execute(select(empi_record).where(empi_record.c.patient_id.in_(ids[start:start + 500])))
            found.update((r.patient_id, _record(r)) for r in rows)
        return found

    def members(self, person_ids: Iterable[str]) -> list[RecordRow]:
        """The source records of these persons."""
        ids = sorted(set(person_ids))
        if not ids:
            return []
        rows = self.connection.execute(
            select(empi_record).where(empi_record.c.person_id.in_(ids)).order_by(empi_record.c.record_pk))
        return [_record(r) for r in rows]

    def candidates(self, keys: Sequence[int], max_block_size: int, limit: int = 2000) -> list[RecordRow]:
        """Records sharing a blocking key, skipping keys shared by more than ``max_block_size`` records."""
        found = {r.record_pk: r for rows in self.blocked(keys, max_block_size).values() for r in rows}
        return [found[pk] for pk in sorted(found)[:limit]]

    def blocked(self, keys: Iterable[int], max_block_size: int) -> dict[int, list[RecordRow]]:
        """The records under each blocking key (a page's candidates in a few statements); keys held by more
        than ``max_block_size`` records map to none. Two index lookups rather than one statement: each has
        one plan, the same with or without planner statistics (a table growing from empty has none)."""
        wanted = sorted(set(keys))
        by_key: dict[int, list[int]] = {k: [] for k in wanted}
        for start in range(0, len(wanted), 1000):
            for key, pk in self.connection.execute(_BLOCK_RECORDS, {"keys": wanted[start:start + 1000]}):
                by_key[key].append(pk)
        usable = sorted({pk for pks in by_key.values() if len(pks) <= max_block_size for pk in pks})
        rows: dict[int, RecordRow] = {}
        for start in range(0, len(usable), 1000):
            for row in self.connection.execute(_RECORDS_BY_PK, {"pks": usable[start:start + 1000]}):
                rows[row.record_pk] = _record(row)
        return {key: [rows[pk] for pk in pks] if len(pks) <= max_block_size else [] for key, pks in by_key.items()}

    def next_keys(self) -> tuple[int, int]:
        """The next free person and record keys (the EMPI assigns them itself, under its lock)."""
        person = self.connection.execute(select(func.max(empi_person.c.person_pk))).scalar()
        record = self.connection.execute(select(func.max(empi_record.c.record_pk))).scalar()
        return int(person or 0) + 1, int(record or 0) + 1

    def write_records(self, new: Sequence[RecordRow], changed: Sequence[RecordRow], keys: dict[int, Sequence[int]],
                      now: datetime) -> None:
        """Insert ``new`` and update ``changed`` records, and replace the blocking keys of both."""
        def row(record: RecordRow) -> dict[str, Any]:
            return {"record_pk": record.record_pk, "patient_id": record.patient_id, "person_id": record.person_id,
                    "grade": record.grade, "origin": record.origin, "score": record.score,
                    "institution": record.institution, "features": orjson.dumps(record.features).decode(),
                    "updated": now}
        if new:
            insert_rows(self.connection, empi_record, [row(r) for r in new])
        for record in changed:
            values = row(record)
            del values["record_pk"], values["patient_id"]
            self.connection.execute(update(empi_record).where(empi_record.c.record_pk == record.record_pk)
                                    .values(**values))
        stale = [r.record_pk for r in changed]
        for start in range(0, len(stale), 500):
            self.connection.execute(delete(empi_block).where(empi_block.c.record_pk.in_(stale[start:start + 500])))
        insert_rows(self.connection, empi_block, [
            {"block_key": key, "record_pk": pk} for pk, record_keys in keys.items() for key in record_keys])

    def remove_record(self, record: RecordRow) -> None:
        """Forget a record (its Patient was deleted)."""
        self.connection.execute(delete(empi_block).where(empi_block.c.record_pk == record.record_pk))
        self.connection.execute(delete(empi_record).where(empi_record.c.record_pk == record.record_pk))

    # -- persons ---------------------------------------------------------------------------

    def insert_persons(self, persons: Sequence[tuple[int, str, str]], now: datetime) -> None:
        """New active persons: (key, person id, regional identifier)."""
        insert_rows(self.connection, empi_person, [
            {"person_pk": pk, "person_id": person_id, "regional_id": regional, "status": "active",
             "merged_into": None, "created": now, "updated": now} for pk, person_id, regional in persons])

    def persons(self, person_ids: Iterable[str]) -> dict[str, PersonRow]:
        """These persons by id."""
        ids = sorted(set(person_ids))
        if not ids:
            return {}
        rows = self.connection.execute(select(empi_person).where(empi_person.c.person_id.in_(ids)))
        return {r.person_id: _person(r) for r in rows}

    def person_by_regional_id(self, regional_id: str) -> PersonRow | None:
        """The person holding a regional identifier."""
        row = self.connection.execute(select(empi_person).where(empi_person.c.regional_id == regional_id)).first()
        return _person(row) if row else None

    def set_status(self, person_id: str, status: str, merged_into: str | None, now: datetime) -> None:
        """Mark a person active, merged (into another) or retired."""
        self.connection.execute(update(empi_person).where(empi_person.c.person_id == person_id)
                                .values(status=status, merged_into=merged_into, updated=now))

    # -- not-duplicate pairs ---------------------------------------------------------------

    def no_match_with(self, patient_id: str) -> set[str]:
        """The source Patients decided to be someone else than ``patient_id``."""
        c = empi_no_match.c
        rows = self.connection.execute(
            select(c.patient_a, c.patient_b).where(or_(c.patient_a == patient_id, c.patient_b == patient_id)))
        return {b if a == patient_id else a for a, b in rows}

    def add_no_match(self, pairs: Iterable[tuple[str, str]], actor: str, reason: str, now: datetime) -> int:
        """Record pairs as different people (pairs already recorded are kept); how many were new."""
        wanted = {_pair(a, b) for a, b in pairs if a != b}
        if not wanted:
            return 0
        c = empi_no_match.c
        existing = set()
        for a, b in wanted:
            if self.connection.execute(select(c.patient_a).where(and_(c.patient_a == a, c.patient_b == b))).first():
                existing.add((a, b))
        new = sorted(wanted - existing)
        if new:
            insert_rows(self.connection, empi_no_match, [
                {"patient_a": a, "patient_b": b, "decided_by": actor, "reason": reason, "decided_at": now}
                for a, b in new])
        return len(new)

    def remove_no_match(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Forget not-duplicate decisions (a manual link overrides them)."""
        for a, b in {_pair(a, b) for a, b in pairs}:
            self.connection.execute(delete(empi_no_match).where(
                empi_no_match.c.patient_a == a, empi_no_match.c.patient_b == b))

    # -- review items ----------------------------------------------------------------------

    def open_review(self, patient_id: str, candidate_person: str, score: float, comparison: dict[str, Any],
                    now: datetime) -> bool:
        """Queue (or refresh) a possible match; False when it was already open with this score."""
        c = empi_review.c
        row = self.connection.execute(select(c.review_id, c.score).where(
            c.patient_id == patient_id, c.candidate_person == candidate_person, c.status == "open")).first()
        text = orjson.dumps(comparison).decode()
        if row is not None:
            if abs(row.score - score) < 1e-9:
                return False
            self.connection.execute(update(empi_review).where(c.review_id == row.review_id)
                                    .values(score=score, comparison=text, version=c.version + 1))
            return True
        self.connection.execute(insert(empi_review).values(
            patient_id=patient_id, candidate_person=candidate_person, score=score, comparison=text,
            status="open", version=1, created=now))
        return True

    def reviews(self, *, status: str = "open", limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Review items of ``status``, highest score first, and how many there are."""
        c = empi_review.c
        total = self.connection.execute(select(func.count()).select_from(empi_review).where(c.status == status)).scalar_one()
        rows = self.connection.execute(select(empi_review).where(c.status == status)
                                       .order_by(c.score.desc(), c.review_id).limit(limit).offset(offset))
        return [self._review(r) for r in rows], int(total)

    def review(self, review_id: int) -> dict[str, Any] | None:
        """One review item."""
        row = self.connection.execute(select(empi_review).where(empi_review.c.review_id == review_id)).first()
        return self._review(row) if row else None

    @staticmethod
    def _review(row: Any) -> dict[str, Any]:
        return {"id": row.review_id, "patient_id": row.patient_id, "candidate_person": row.candidate_person,
                "score": row.score, "comparison": orjson.loads(row.comparison), "status": row.status,
                "version": row.version, "created": row.created, "decided_by": row.decided_by,
                "decided_at": row.decided_at, "reason": row.reason}

    def close_review(self, review_id: int, version: int | None, status: str, actor: str, reason: str,
                     now: datetime) -> bool:
        """Close an open item if it is still at ``version`` (any version when None); False otherwise."""
        c = empi_review.c
        query = update(empi_review).where(c.review_id == review_id, c.status == "open")
        if version is not None:
            query = query.where(c.version == version)
        result = self.connection.execute(query.values(status=status, decided_by=actor, decided_at=now, reason=reason,
                                                      version=c.version + 1))
        return result.rowcount == 1

    def obsolete_reviews(self, patient_ids: Sequence[str], now: datetime, *, keep_persons: Iterable[str] = ()) -> None:
        """Close the open items of these records (their situation changed), except those naming ``keep_persons``."""
        if not patient_ids:
            return
        c = empi_review.c
        query = update(empi_review).where(c.status == "open", c.patient_id.in_(list(patient_ids)))
        keep = sorted(set(keep_persons))
        if keep:
            query = query.where(c.candidate_person.not_in(keep))
        self.connection.execute(query.values(status="obsolete", decided_at=now, version=c.version + 1))

    def settle_reviews(self, patient_ids: Sequence[str], candidate_person: str, status: str, actor: str, reason: str,
                       now: datetime) -> None:
        """Close the open items of these records against one person (a decision settled them)."""
        if not patient_ids:
            return
        c = empi_review.c
        self.connection.execute(update(empi_review).where(
            c.status == "open", c.candidate_person == candidate_person, c.patient_id.in_(list(patient_ids)),
        ).values(status=status, decided_by=actor, decided_at=now, reason=reason, version=c.version + 1))

    def obsolete_reviews_of_person(self, person_id: str, now: datetime) -> None:
        """Close the open items naming a person that no longer stands alone (merged, retired)."""
        c = empi_review.c
        self.connection.execute(update(empi_review).where(c.status == "open", c.candidate_person == person_id)
                                .values(status="obsolete", decided_at=now, version=c.version + 1))

    # -- history ---------------------------------------------------------------------------

    def log(self, events: Sequence[dict[str, Any]]) -> None:
        """Add events to the history (keys as the columns; ``detail`` a dict)."""
        insert_rows(self.connection, empi_event, [
            {"at": e["at"], "action": e["action"], "actor": e["actor"], "person_id": e["person_id"],
             "patient_id": e.get("patient_id"), "other_person": e.get("other_person"), "reason": e.get("reason", ""),
             "detail": orjson.dumps(e.get("detail") or {}).decode()} for e in events])

    def history(self, *, person_id: str | None = None, patient_id: str | None = None,
                limit: int = 200) -> list[dict[str, Any]]:
        """Events of a person (as the person or the other side) or of a record, newest first."""
        c = empi_event.c
        conditions = []
        if person_id:
            conditions += [c.person_id == person_id, c.other_person == person_id]
        if patient_id:
            conditions.append(c.patient_id == patient_id)
        if not conditions:
            return []
        rows = self.connection.execute(select(empi_event).where(or_(*conditions))
                                       .order_by(c.event_id.desc()).limit(limit))
        return [{"id": r.event_id, "at": r.at, "action": r.action, "actor": r.actor, "person_id": r.person_id,
                 "patient_id": r.patient_id, "other_person": r.other_person, "reason": r.reason,
                 "detail": orjson.loads(r.detail)} for r in rows]

    def last_merge_into(self, merged: str) -> dict[str, Any] | None:
        """The last merge of person ``merged`` into another (the records it moved are in its detail)."""
        c = empi_event.c
        row = self.connection.execute(select(empi_event).where(c.action == "merge", c.other_person == merged)
                                      .order_by(c.event_id.desc()).limit(1)).first()
        if row is None:
            return None
        return {"id": row.event_id, "survivor": row.person_id, "detail": orjson.loads(row.detail)}
