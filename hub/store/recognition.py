"""The recognition tables (检查检验结果互认): catalogue versions, quality-control records, checks, decisions.

SQL only; the rules and the check are in :mod:`hub.recognition`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, select, update

from hub.fhir.instants import aware
from hub.store.service_tables import (
    recognition_catalogue,
    recognition_check,
    recognition_decision,
    recognition_eqa,
    recognition_stamp,
)

#: The counter moved by every change of the catalogue or of the quality-control records.
RULES = "rules"


@dataclass(frozen=True)
class EqaRecord:
    """An institution's external quality assessment result for a catalogue item in a year."""

    institution: str
    item_id: str
    year: int
    passed: bool
    scheme: str = ""
    certificate: str = ""


@dataclass(frozen=True)
class CheckRow:
    """A recognition check as recorded (the decision columns are filled later)."""

    check_id: str
    checked_at: datetime
    check_day: str
    institution: str
    item_id: str | None
    requested: str
    person: str | None
    origin: str
    order_ref: str | None
    recognizable: int
    result_ref: str | None
    performer: str | None
    price_fen: int | None
    checked_by: str
    clinician: str | None = None
    hook_instance: str | None = None


class RecognitionStore:
    """The recognition tables inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- change counter ----------------------------------------------------------------------

    def stamp(self, *, lock: bool = False) -> int:
        """The rules' change counter (0 before any change).

        ``lock`` (a transaction that writes results by these rules) holds the counter row shared until
        it ends: a change of the rules waits for it, and it waits for a change under way, so no result
        is committed under rules older than those a re-marking after the change reads (PostgreSQL; SQLite
        has one writer at a time anyway).
        """
        query = select(recognition_stamp.c.counter).where(recognition_stamp.c.name == RULES)
        if lock:
            query = query.with_for_update(read=True)
        value = self.connection.execute(query).scalar_one_or_none()
        return int(value or 0)

    def bump(self) -> None:
        """Move the change counter, first thing in the transaction that changes the rules (it then holds the
        row until it commits: rule changes run one at a time, after the writers that read the old rules)."""
        moved = self.connection.execute(update(recognition_stamp).where(recognition_stamp.c.name == RULES)
                                        .values(counter=recognition_stamp.c.counter + 1)).rowcount
        if not moved:
            self.connection.execute(insert(recognition_stamp).values(name=RULES, counter=1))

    # -- catalogue ---------------------------------------------------------------------------

    def catalogue(self) -> dict[str, Any] | None:
        """The catalogue in force (the newest loaded), with ``loaded_at`` and ``loaded_by``; None if none."""
        row = self.connection.execute(
            select(recognition_catalogue).order_by(recognition_catalogue.c.catalogue_pk.desc()).limit(1)).first()
        if row is None:
            return None
        return {**orjson.loads(row.content), "loaded_at": aware(row.loaded_at).isoformat(), "loaded_by": row.loaded_by}

    def save_catalogue(self, content: dict[str, Any], actor: str, now: datetime) -> None:
        """Put a catalogue in force (earlier versions are kept); call :meth:`bump` first."""
        self.connection.execute(insert(recognition_catalogue).values(
            version=str(content.get("version") or ""), content=orjson.dumps(content).decode(),
            loaded_at=now, loaded_by=actor))

    def catalogue_history(self) -> list[dict[str, Any]]:
        """Every catalogue loaded, newest first (version, items, when, by whom)."""
        c = recognition_catalogue.c
        rows = self.connection.execute(select(c.catalogue_pk, c.version, c.content, c.loaded_at, c.loaded_by)
                                       .order_by(c.catalogue_pk.desc()))
        return [{"version": r.version, "items": len(orjson.loads(r.content).get("items") or ()),
                 "loaded_at": aware(r.loaded_at).isoformat(), "loaded_by": r.loaded_by} for r in rows]

    # -- quality control ---------------------------------------------------------------------

    def eqa_records(self, *, institution: str | None = None, item_id: str | None = None,
                    year: int | None = None) -> list[dict[str, Any]]:
        """Quality-control records, filtered, ordered by year (newest first), institution and item."""
        c = recognition_eqa.c
        query = select(recognition_eqa)
        for column, value in ((c.institution, institution), (c.item_id, item_id), (c.year, year)):
            if value is not None:
                query = query.where(column == value)
        rows = self.connection.execute(query.order_by(c.year.desc(), c.institution, c.item_id))
        return [{"id": r.eqa_pk, "institution": r.institution, "item": r.item_id, "year": r.year,
                 "passed": bool(r.passed), "scheme": r.scheme, "certificate": r.certificate,
                 "recorded_by": r.recorded_by, "recorded_at": aware(r.recorded_at).isoformat()} for r in rows]

    def results(self) -> dict[tuple[str, str, int], bool]:
        """Every record as (institution, item, year) → passed (the rules hold them in memory)."""
        c = recognition_eqa.c
        rows = self.connection.execute(select(c.institution, c.item_id, c.year, c.passed))
        return {(r.institution, r.item_id, int(r.year)): bool(r.passed) for r in rows}

    def save_eqa(self, records: Sequence[EqaRecord], actor: str, now: datetime) -> int:
        """Record results (a result already recorded for the institution, item and year is replaced)."""
        c = recognition_eqa.c
        if records:
            self.bump()
        for record in records:
            self.connection.execute(delete(recognition_eqa).where(
                c.institution == record.institution, c.item_id == record.item_id, c.year == record.year))
        if records:
            self.connection.execute(insert(recognition_eqa), [
                {"institution": r.institution, "item_id": r.item_id, "year": r.year, "passed": r.passed,
                 "scheme": r.scheme, "certificate": r.certificate, "recorded_by": actor, "recorded_at": now}
                for r in records])
        return len(records)

    def delete_eqa(self, eqa_id: int) -> EqaRecord | None:
        """Remove a record; the record removed, or None if there was none."""
        self.bump()
        row = self.connection.execute(select(recognition_eqa).where(recognition_eqa.c.eqa_pk == eqa_id)).first()
        if row is None:
            return None
        self.connection.execute(delete(recognition_eqa).where(recognition_eqa.c.eqa_pk == eqa_id))
        return EqaRecord(row.institution, row.item_id, int(row.year), bool(row.passed), row.scheme, row.certificate)

    # -- checks and decisions -----------------------------------------------------------------

    def record_checks(self, rows: Iterable[CheckRow]) -> None:
        """Keep checks."""
        values = [row.__dict__ for row in rows]
        if values:
            self.connection.execute(insert(recognition_check), values)

    def check(self, check_id: str) -> dict[str, Any] | None:
        """One check with its decision."""
        row = self.connection.execute(
            select(recognition_check).where(recognition_check.c.check_id == check_id)).first()
        return dict(row._mapping) if row is not None else None

    def decide(self, check_id: str, decision: str, reason: str | None, comment: str | None, actor: str,
               clinician: str | None, now: datetime) -> None:
        """Record a decision taken on a check: kept in the decision log; the check shows the latest."""
        self.connection.execute(update(recognition_check).where(recognition_check.c.check_id == check_id).values(
            decision=decision, reason=reason, comment=comment, decided_at=now, decided_by=actor))
        self.connection.execute(insert(recognition_decision).values(
            check_id=check_id, decision=decision, reason=reason, comment=comment, decided_at=now, decided_by=actor,
            clinician=clinician))

    def decisions(self, check_id: str) -> list[dict[str, Any]]:
        """The decisions taken on a check, oldest first."""
        c = recognition_decision.c
        rows = self.connection.execute(select(c.decision, c.reason, c.comment, c.decided_at, c.decided_by, c.clinician)
                                       .where(c.check_id == check_id).order_by(c.decision_pk))
        return [{**row._mapping, "decided_at": aware(row.decided_at).isoformat()} for row in rows]

    def latest_for_order(self, institution: str, order_ref: str, item_id: str | None,
                         since: datetime) -> dict[str, Any] | None:
        """The latest check since ``since`` of the same order and item (a hook called again for it)."""
        c = recognition_check.c
        row = self.connection.execute(
            select(recognition_check).where(c.institution == institution, c.order_ref == order_ref,
                                            c.item_id == item_id, c.checked_at >= since)
            .order_by(c.checked_at.desc()).limit(1)).first()
        return dict(row._mapping) if row is not None else None

    def forget_check(self, check_id: str) -> None:
        """Drop an undecided check another check of the same order replaces."""
        self.connection.execute(delete(recognition_check).where(recognition_check.c.check_id == check_id,
                                                               recognition_check.c.decision.is_(None)))

    def checks(self, *, first_day: str, last_day: str, institutions: Iterable[str] | None = None,
               decision: str | None = None, reason: str | None = None, eligible: bool | None = None,
               limit: int = 100, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Recorded checks, newest first, filtered; and how many match."""
        c = recognition_check.c
        conditions = [c.check_day >= first_day, c.check_day <= last_day]
        if institutions is not None:
            conditions.append(c.institution.in_(sorted(institutions)))
        if decision == "undecided":
            conditions.append(c.decision.is_(None))
        elif decision is not None:
            conditions.append(c.decision == decision)
        if reason is not None:
            conditions.append(c.reason == reason)
        if eligible is not None:
            conditions.append(c.recognizable > 0 if eligible else c.recognizable == 0)
        total = self.connection.execute(select(func.count()).select_from(recognition_check)
                                        .where(and_(*conditions))).scalar_one()
        rows = self.connection.execute(select(recognition_check).where(and_(*conditions))
                                       .order_by(c.checked_at.desc(), c.check_id).limit(limit).offset(offset))
        return [dict(row._mapping) for row in rows], int(total)

    def institution_totals(self, first_day: str, last_day: str) -> list[dict[str, Any]]:
        """Checks of the local days ``first_day`` to ``last_day`` summed per ordering institution, eligibility,
        decision and reason, with the prices of the items (the dashboards' figures)."""
        return self._totals(first_day, last_day, None, (recognition_check.c.institution,))

    def day_totals(self, first_day: str, last_day: str,
                   institutions: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Checks summed per day, ordering institution, eligibility, decision and reason."""
        c = recognition_check.c
        return self._totals(first_day, last_day, institutions, (c.check_day, c.institution, c.item_id))

    def _totals(self, first_day: str, last_day: str, institutions: Iterable[str] | None,
                keys: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Checks of the local days ``first_day`` to ``last_day`` summed per ``keys``, eligibility, decision and
        reason, with the prices of their items."""
        c = recognition_check.c
        eligible = (c.recognizable > 0).label("eligible")
        conditions = [c.check_day >= first_day, c.check_day <= last_day]
        if institutions is not None:
            conditions.append(c.institution.in_(sorted(institutions)))
        query = (select(*keys, eligible, c.decision, c.reason, func.count().label("checks"),
                        func.coalesce(func.sum(c.price_fen), 0).label("price_fen"))
                 .where(and_(*conditions))
                 .group_by(*keys, eligible, c.decision, c.reason))
        return [dict(row._mapping) for row in self.connection.execute(query)]
