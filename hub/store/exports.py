"""Storage of Bulk Data export jobs and the list of their files (the files are on disk).

A job moves ``accepted`` → ``in-progress`` → ``completed`` or ``failed``; a cancelled job
is deleted. A run claims a job with a compare-and-set on its status and heartbeat, and a run
whose heartbeat stopped is taken over by a new run (its ``attempts`` counted up); every
later write of a run names its attempt, so a run that was taken over can change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, literal, or_, select, text, union, update

from hub.fhir.criteria import Criterion, IdCriterion
from hub.fhir.instants import aware
from hub.privacy import DataKeyring
from hub.store.search_sql import SearchSql
from hub.store.service_tables import export_file, export_job, export_member
from hub.store.tables import empi_person, empi_record, resource

ACCEPTED = "accepted"
IN_PROGRESS = "in-progress"
COMPLETED = "completed"
FAILED = "failed"
OPEN_STATUSES = (ACCEPTED, IN_PROGRESS)
#: Encryption context of a job's request and parameters.
SEALED_CONTEXT = "export-request"
#: Runs of one job at most (a run whose process died is started again).
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ExportJob:
    """One export job."""

    job_id: str
    client_id: str
    status: str
    request: str
    spec: dict[str, Any]
    access: dict[str, Any]
    transaction_time: datetime
    created: datetime
    writers_mark: int | None = None
    started: datetime | None = None
    heartbeat: datetime | None = None
    finished: datetime | None = None
    exported: int = 0
    progress: str = ""
    attempts: int = 0
    error_status: int | None = None
    error: str | None = None
    expires: datetime | None = None


@dataclass(frozen=True)
class ExportFile:
    """One written NDJSON file of a job."""

    file_name: str
    seq: int
    resource_type: str
    kind: str  # output or error
    count: int
    size: int


def _aware(moment: datetime | None) -> datetime | None:
    return aware(moment) if moment is not None else None


def _in_parts(criteria: tuple[Criterion, ...], size: int = 1000) -> list[tuple[Criterion, ...]]:
    """``criteria`` as several searches whose results together are its results, each listing at most
    ``size`` ids (an :class:`IdCriterion` of many ids is split)."""
    for index, criterion in enumerate(criteria):
        if isinstance(criterion, IdCriterion) and not criterion.negate and len(criterion.ids) > size:
            return [(*criteria[:index], IdCriterion(criterion.ids[start:start + size]), *criteria[index + 1:])
                    for start in range(0, len(criterion.ids), size)]
    return [criteria]


def _job(row: Any, keyring: DataKeyring) -> ExportJob:
    return ExportJob(
        row.job_id, row.client_id, row.status, keyring.decrypt(row.request, SEALED_CONTEXT),
        orjson.loads(keyring.decrypt(row.spec, SEALED_CONTEXT)), orjson.loads(row.access),
        _aware(row.transaction_time), _aware(row.created), row.writers_mark,  # type: ignore[arg-type]
        _aware(row.started), _aware(row.heartbeat), _aware(row.finished), row.exported, row.progress,
        row.attempts, row.error_status, row.error, _aware(row.expires),
    )


class ExportStore:
    """Export jobs and files, inside the caller's transaction.

    A job's request URL and parameters are kept encrypted (a ``_typeFilter`` may search an ID number).
    """

    def __init__(self, connection: Connection, keyring: DataKeyring) -> None:
        self.connection = connection
        self.keyring = keyring

    def add(self, job: ExportJob) -> None:
        """Store a new job."""
        self.connection.execute(insert(export_job).values(
            job_id=job.job_id, client_id=job.client_id, status=job.status,
            request=self.keyring.encrypt(job.request, SEALED_CONTEXT),
            spec=self.keyring.encrypt(orjson.dumps(job.spec).decode(), SEALED_CONTEXT),
            access=orjson.dumps(job.access).decode(),
            transaction_time=job.transaction_time, writers_mark=job.writers_mark, created=job.created,
            exported=0, progress=job.progress, attempts=0))

    def get(self, job_id: str) -> ExportJob | None:
        """A job, or None."""
        row = self.connection.execute(select(export_job).where(export_job.c.job_id == job_id)).first()
        return _job(row, self.keyring) if row is not None else None

    def open_jobs(self, client_id: str) -> int:
        """How many jobs of the client are accepted or running."""
        query = select(func.count()).select_from(export_job).where(
            export_job.c.client_id == client_id, export_job.c.status.in_(OPEN_STATUSES))
        return int(self.connection.execute(query).scalar_one())

    def claim(self, now: datetime, stale_before: datetime, expires: datetime) -> ExportJob | None:
        """Take the oldest accepted job, or a running one whose run stopped beating before ``stale_before``
        (one that was started :data:`MAX_ATTEMPTS` times already fails instead, to expire at ``expires``)."""
        candidates = self.connection.execute(
            select(export_job.c.job_id, export_job.c.status, export_job.c.heartbeat, export_job.c.attempts)
            .where(or_(export_job.c.status == ACCEPTED,
                       and_(export_job.c.status == IN_PROGRESS, export_job.c.heartbeat < stale_before)))
            .order_by(export_job.c.created).limit(5)).all()
        for job_id, status, heartbeat, attempts in candidates:
            same = export_job.c.heartbeat.is_(None) if heartbeat is None else export_job.c.heartbeat == heartbeat
            claimed = update(export_job).where(export_job.c.job_id == job_id, export_job.c.status == status, same)
            if attempts >= MAX_ATTEMPTS:
                self.connection.execute(claimed.values(
                    status=FAILED, finished=now, expires=expires, error_status=500, progress="Failed",
                    error=f"The export was interrupted {attempts} times (its hub process stopped); ask again"))
                continue
            taken = self.connection.execute(claimed.values(
                status=IN_PROGRESS, started=now, heartbeat=now, exported=0, progress="Starting", attempts=attempts + 1))
            if taken.rowcount == 1:
                job = self.get(job_id)
                return replace(job, status=IN_PROGRESS) if job is not None else None
        return None

    @staticmethod
    def _running(job: ExportJob) -> Any:
        """This run of the job, still running (not cancelled, failed, or taken over by another run)."""
        return update(export_job).where(export_job.c.job_id == job.job_id, export_job.c.status == IN_PROGRESS,
                                        export_job.c.attempts == job.attempts)

    def beat(self, job: ExportJob, now: datetime, exported: int, progress: str) -> bool:
        """Record a run's progress; False when the job is no longer this run's (cancelled, or taken over)."""
        return self.connection.execute(self._running(job).values(
            heartbeat=now, exported=exported, progress=progress[:500])).rowcount == 1

    def release(self, job: ExportJob) -> None:
        """Give a run's job back to the queue (its process is stopping): another run starts it at once."""
        self.connection.execute(self._running(job).values(status=ACCEPTED, heartbeat=None, progress="Queued",
                                                          attempts=job.attempts - 1))

    def complete(self, job: ExportJob, now: datetime, expires: datetime, exported: int,
                 files: Sequence[ExportFile]) -> bool:
        """Mark the job done with its run's files; False when it is no longer this run's."""
        job_id = job.job_id
        done = self.connection.execute(self._running(job).values(
            status=COMPLETED, finished=now, heartbeat=now, expires=expires, exported=exported, progress="Complete"))
        if done.rowcount != 1:
            return False
        if files:
            self.connection.execute(insert(export_file), [
                {"job_id": job_id, "file_name": f.file_name, "seq": f.seq, "resource_type": f.resource_type,
                 "kind": f.kind, "count": f.count, "size": f.size} for f in files])
        return True

    def fail(self, job: ExportJob, now: datetime, expires: datetime, status: int, error: str) -> bool:
        """Mark the run's job failed (the status request answers ``status`` and ``error``); False when it is
        no longer this run's."""
        return self.connection.execute(self._running(job).values(
            status=FAILED, finished=now, expires=expires, error_status=status, error=error[:2000],
            progress="Failed")).rowcount == 1

    def fill_members(self, job_id: str, criteria: tuple[Criterion, ...]) -> int:
        """Hold the Patients matching ``criteria`` as the job's member set, with every Patient of the same
        regional persons and their golden Patients (a listed golden Patient brings its sources); how many.

        Listed ids are taken a thousand at a time (the databases limit the parameters of a statement).
        """
        self.clear_members(job_id)
        patients = resource.alias("member_patient")
        sql = SearchSql(probe_after_first=self.connection.dialect.name == "sqlite")
        for part in _in_parts(criteria):
            matching = select(literal(job_id), patients.c.res_id).where(
                patients.c.resource_type == "Patient", patients.c.deleted.is_(False),
                *sql.conditions(part, patients, "Patient"))
            existing = select(export_member.c.patient_id).where(export_member.c.job_id == job_id)
            self.connection.execute(insert(export_member).from_select(
                ["job_id", "patient_id"], matching.where(patients.c.res_id.not_in(existing))))
        members = select(export_member.c.patient_id).where(export_member.c.job_id == job_id)
        persons = union(select(empi_record.c.person_id).where(empi_record.c.patient_id.in_(members)),
                        select(empi_person.c.person_id).where(empi_person.c.person_id.in_(members))).subquery()
        same = union(select(empi_record.c.patient_id.label("patient_id"))
                     .where(empi_record.c.person_id.in_(select(persons.c.person_id))),
                     select(persons.c.person_id.label("patient_id"))).subquery()
        added = select(literal(job_id), same.c.patient_id).where(same.c.patient_id.not_in(members))
        self.connection.execute(insert(export_member).from_select(["job_id", "patient_id"], added))
        return int(self.connection.execute(select(func.count()).select_from(members.subquery())).scalar_one())

    def clear_members(self, job_id: str) -> None:
        """Forget the job's member set."""
        self.connection.execute(delete(export_member).where(export_member.c.job_id == job_id))

    def delete(self, job_id: str) -> bool:
        """Forget a job and its files' list (cancel, expiry); False when it did not exist."""
        self.clear_members(job_id)
        self.connection.execute(delete(export_file).where(export_file.c.job_id == job_id))
        return self.connection.execute(delete(export_job).where(export_job.c.job_id == job_id)).rowcount == 1

    def files(self, job_id: str) -> list[ExportFile]:
        """The files of a completed job, in order."""
        rows = self.connection.execute(select(export_file).where(export_file.c.job_id == job_id)
                                       .order_by(export_file.c.kind.desc(), export_file.c.seq))
        return [ExportFile(r.file_name, r.seq, r.resource_type, r.kind, r.count, r.size) for r in rows]

    def expired(self, now: datetime) -> list[str]:
        """Finished jobs whose files are past their retention."""
        return list(self.connection.execute(
            select(export_job.c.job_id).where(export_job.c.expires < now)).scalars())

    def job_ids(self) -> set[str]:
        """Every job id (to find directories of jobs that no longer exist)."""
        return set(self.connection.execute(select(export_job.c.job_id)).scalars())

    # -- the writers a run waits for -------------------------------------------------------

    def writers_mark(self) -> int | None:
        """PostgreSQL: the database server's time now, in microseconds (None elsewhere)."""
        if self.connection.dialect.name != "postgresql":
            return None
        return int(self.connection.execute(
            text("SELECT CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS bigint)")).scalar_one())

    def writers_done(self, mark: int) -> bool:
        """PostgreSQL: True when no write transaction of this database that began before ``mark`` is still open
        (every hub write transaction takes its transaction id when it begins)."""
        open_writers = self.connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_xid IS NOT NULL AND xact_start < to_timestamp(:mark / 1000000.0)"), {"mark": mark})
        return int(open_writers.scalar_one()) == 0
