"""SQL of the dashboards: the change queue, the facts, and the indexed aggregates the indicators read.

Patients are counted as the EMPI's persons: a Patient linked to a regional person counts as that person
(``COALESCE(person_id, patient)``), so one resident seen at two institutions is one person.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from hub.fhir.instants import aware
from hub.store.dashboard_tables import dash_change, dash_fact, dash_total
from hub.store.index_rows import insert_rows
from hub.store.ingest_state import open_quarantine_counts
from hub.store.tables import (
    empi_record,
    empi_review,
    ingest_run,
    mapping_conflict,
    resource,
    source_system,
)

#: How a reading counts as controlled (the measure's threshold), by fact kind: fixed SQL, never user text.
CONTROLLED = {"bp": "f.value1 < 140 AND f.value2 < 90", "glucose": "f.value1 < 7.0"}

#: Persons under a program's management in a period, in one pass over its follow-ups (each carries the reading
#: taken at it, see :meth:`DashboardStore.attach_readings`): a person's follow-ups are counted and the latest found
#: by GROUP BY (hash aggregates, no window sorts); the latest gives the managing institution (ties at one instant:
#: the greatest id) and decides control.
_PROGRAM_SQL = """
WITH f AS (
  SELECT COALESCE(r.person_id, f.patient) AS person, f.institution, f.moment, f.value1, f.value2
  FROM hub_dash_fact f LEFT JOIN hub_empi_record r ON r.patient_id = f.patient
  WHERE f.kind = :follow_up AND f.day >= :first AND f.day <= :last AND f.patient <> ''
), per AS (
  SELECT person, COUNT(*) AS visits, MAX(moment) AS last FROM f GROUP BY person
), latest AS (
  SELECT f.person, MAX(per.visits) AS visits, MAX(f.institution) AS institution,
         MIN(CASE WHEN f.value1 IS NULL THEN 0 WHEN {controlled} THEN 1 ELSE 0 END) AS controlled,
         MAX(CASE WHEN f.value1 IS NULL THEN 0 ELSE 1 END) AS measured
  FROM f JOIN per ON per.person = f.person AND per.last = f.moment
  GROUP BY f.person
)
SELECT institution, COUNT(*) AS managed, SUM(CASE WHEN visits >= :required THEN 1 ELSE 0 END) AS standard,
       SUM(controlled) AS controlled, SUM(measured) AS measured
FROM latest
GROUP BY institution
"""
#: Which reading each program's follow-ups carry.
PROGRAM_READINGS = {"follow-up:hypertension": "bp", "follow-up:diabetes": "glucose"}
READINGS = tuple(PROGRAM_READINGS.values())


def _by_type(keys: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    by_type: dict[str, list[str]] = {}
    for resource_type, res_id in keys:
        by_type.setdefault(resource_type, []).append(res_id)
    return by_type


def _add(deltas: dict[tuple[str, str], list[int]], key: tuple[str, str], *values: int) -> None:
    total = deltas.setdefault(key, [0, 0, 0])
    for index, value in enumerate(values):
        total[index] += value


class DashboardStore:
    """The dashboards' tables inside one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- the change queue and the facts ------------------------------------------------------------

    def claim_changes(self, limit: int) -> list[tuple[int, str, str]]:
        """The oldest queued writes ``(pk, type, id)``."""
        query = (select(dash_change.c.change_pk, dash_change.c.resource_type, dash_change.c.res_id)
                 .order_by(dash_change.c.change_pk).limit(limit))
        return [(int(r.change_pk), r.resource_type, r.res_id) for r in self.connection.execute(query)]

    def remove_changes(self, pks: Sequence[int]) -> None:
        """Forget writes read."""
        for start in range(0, len(pks), 500):
            self.connection.execute(delete(dash_change).where(dash_change.c.change_pk.in_(pks[start:start + 500])))

    def pending(self) -> int:
        """How many writes wait to be read."""
        return int(self.connection.execute(select(func.count()).select_from(dash_change)).scalar_one())

    def replace_facts(self, keys: Sequence[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
        """The facts of the resources ``keys`` become ``rows`` (each names its resource); the records' totals
        follow (what the old ``record`` facts counted is taken off, what the new ones count is added)."""
        deltas: dict[tuple[str, str], list[int]] = {}
        visits: set[str] = set()
        f = dash_fact.c
        for resource_type, ids in _by_type(keys).items():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                old = self.connection.execute(
                    select(f.code, f.institution, func.count(), func.coalesce(func.sum(f.value1), 0),
                           func.coalesce(func.sum(f.value2), 0))
                    .where(f.kind == "record", f.resource_type == resource_type, f.res_id.in_(chunk))
                    .group_by(f.code, f.institution))
                for source, institution, records, coded, standard in old:
                    _add(deltas, (source, institution), -int(records), -int(coded), -int(standard))
                visits.update(v for (v,) in self.connection.execute(
                    select(f.other).where(f.kind.in_(READINGS), f.resource_type == resource_type, f.res_id.in_(chunk))))
                self.connection.execute(delete(dash_fact).where(f.resource_type == resource_type, f.res_id.in_(chunk)))
        insert_rows(self.connection, dash_fact, rows)
        for row in rows:
            if row["kind"] == "record":
                _add(deltas, (row["code"], row["institution"]), 1, int(row["value1"] or 0), int(row["value2"] or 0))
            elif row["kind"] in READINGS:
                visits.add(row["other"])
            elif row["kind"] in PROGRAM_READINGS:
                visits.add(row["res_id"])
        self._apply_totals(deltas)
        self.attach_readings(sorted(visits - {""}))

    def attach_readings(self, visits: Sequence[str]) -> None:
        """Give each follow-up of ``visits`` (Encounter ids) the values of the latest reading of its program taken
        at it (NULL when none): the management query then reads follow-ups alone."""
        f, m = dash_fact.c, dash_fact.alias("m").c
        for follow_up, reading in PROGRAM_READINGS.items():
            values = {name: select(m[name]).where(m.kind == reading, m.other == f.res_id)
                      .order_by(m.moment.desc(), m.res_id.desc()).limit(1).scalar_subquery()
                      for name in ("value1", "value2")}
            for start in range(0, len(visits), 500):
                self.connection.execute(
                    update(dash_fact)
                    .where(f.kind == follow_up, f.resource_type == "Encounter", f.res_id.in_(visits[start:start + 500]))
                    .values(**values))

    def _apply_totals(self, deltas: dict[tuple[str, str], list[int]]) -> None:
        t = dash_total.c
        for (source, institution), (records, coded, standard) in sorted(deltas.items()):
            if not (records or coded or standard):
                continue
            key = (t.source == source, t.institution == institution)
            changed = self.connection.execute(update(dash_total).where(*key).values(
                records=t.records + records, coded=t.coded + coded, standard=t.standard + standard)).rowcount
            if not changed:
                self.connection.execute(insert(dash_total).values(source=source, institution=institution,
                                                                  records=records, coded=coded, standard=standard))
        self.connection.execute(delete(dash_total).where(t.records <= 0))

    def queue_everything(self, types: Iterable[str]) -> int:
        """Forget every fact and queue every current resource of ``types`` (a rebuild); how many were queued."""
        self.connection.execute(delete(dash_fact))
        self.connection.execute(delete(dash_total))
        self.connection.execute(delete(dash_change))
        chosen = select(resource.c.resource_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), resource.c.resource_type.in_(sorted(types)))
        self.connection.execute(insert(dash_change).from_select(["resource_type", "res_id"], chosen))
        return self.pending()

    # -- aggregates ------------------------------------------------------------------------------

    def visits(self, first: str, last: str) -> list[tuple[str, str, int]]:
        """Visits per institution and encounter class on the local days ``first`` to ``last``."""
        f = dash_fact.c
        query = (select(f.institution, f.code, func.count())
                 .where(f.kind == "visit", f.day >= first, f.day <= last)
                 .group_by(f.institution, f.code))
        return [(r[0], r[1], int(r[2])) for r in self.connection.execute(query)]

    def referrals(self, first: str, last: str) -> list[dict[str, Any]]:
        """Referrals per referring and receiving institution, direction and status."""
        f = dash_fact.c
        query = (select(f.institution, f.other, f.code, f.status, func.count().label("count"))
                 .where(f.kind == "referral", f.day >= first, f.day <= last)
                 .group_by(f.institution, f.other, f.code, f.status))
        return [dict(r._mapping) for r in self.connection.execute(query)]

    def program(self, program: str, reading: str, first: str, last: str, required: int) -> list[dict[str, Any]]:
        """Per managing institution (the one of each person's latest follow-up in the period): persons managed
        (at least one follow-up), those with ``required`` follow-ups or more, those whose reading at that latest
        follow-up was controlled (最近一次随访达标), and those with a reading there at all."""
        sql = text(_PROGRAM_SQL.format(controlled=CONTROLLED[reading]))
        rows = self.connection.execute(sql, {"follow_up": f"follow-up:{program}", "first": first, "last": last,
                                             "required": required})
        return [{k: (int(v) if k != "institution" else v) for k, v in r._mapping.items()} for r in rows]

    def records(self) -> list[tuple[str, str, int, int, int]]:
        """Current records per source and institution, with their local coded values and standard-coded ones."""
        t = dash_total.c
        query = select(t.source, t.institution, t.records, t.coded, t.standard).order_by(t.source, t.institution)
        return [(r[0], r[1], int(r[2]), int(r[3]), int(r[4])) for r in self.connection.execute(query)]

    # -- the data center's state -----------------------------------------------------------------

    def sources(self) -> list[dict[str, Any]]:
        """Every registered source with its last run and its last successful run."""
        s, run = source_system.c, ingest_run.c
        last_ok = (select(run.source_id, func.max(run.run_id).label("run_id"))
                   .where(run.status == "succeeded").group_by(run.source_id).subquery())
        last_any = select(run.source_id, func.max(run.run_id).label("run_id")).group_by(run.source_id).subquery()
        ok_run = ingest_run.alias("ok_run")
        any_run = ingest_run.alias("any_run")
        query = (select(s.source_id, s.institution, s.name, s.system_kind, s.enabled,
                        ok_run.c.finished.label("last_success"), any_run.c.status.label("last_status"),
                        any_run.c.started.label("last_started"))
                 .select_from(source_system)
                 .outerjoin(last_ok, last_ok.c.source_id == s.source_id)
                 .outerjoin(ok_run, ok_run.c.run_id == last_ok.c.run_id)
                 .outerjoin(last_any, last_any.c.source_id == s.source_id)
                 .outerjoin(any_run, any_run.c.run_id == last_any.c.run_id)
                 .order_by(s.source_id))
        out = []
        for row in self.connection.execute(query):
            values = dict(row._mapping)
            for name in ("last_success", "last_started"):
                values[name] = aware(values[name]) if values[name] is not None else None
            out.append(values)
        return out

    def quarantined(self) -> dict[str, int]:
        """Open quarantined rows per source."""
        return open_quarantine_counts(self.connection)

    def open_conflicts(self) -> list[tuple[str, int]]:
        """Open mapping conflicts: the institutions each was seen at (JSON list) and how many share that list."""
        c = mapping_conflict.c
        rows = self.connection.execute(select(c.institutions, func.count()).where(c.status == "open")
                                       .group_by(c.institutions))
        return [(r[0], int(r[1])) for r in rows]

    def open_match_reviews(self) -> dict[str, int]:
        """Open EMPI reviews (possible matches waiting for a decision) per institution of the record reviewed."""
        review, record = empi_review.c, empi_record.c
        query = (select(record.institution, func.count())
                 .select_from(empi_review.outerjoin(empi_record, record.patient_id == review.patient_id))
                 .where(review.status == "open")
                 .group_by(record.institution))
        out: dict[str, int] = {}
        for institution, count in self.connection.execute(query):
            out[institution or ""] = out.get(institution or "", 0) + int(count)
        return out
