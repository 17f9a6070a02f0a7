"""Storage of Bulk Data export jobs and the list of their files (the files are on disk).

A job moves ``accepted`` → ``in-progress`` → ``completed`` or ``failed``; a cancelled job
is deleted. A run claims a job with a compare-and-set on its status and heartbeat, so two
hub processes never run one job, and a run whose heartbeat stopped is taken over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, func, insert, literal, or_, select, text, union, update

from hub.fhir.criteria import Criterion
from hub.store.search_sql import SearchSql
from hub.store.tables import empi_person, empi_record, export_file, export_job, export_member, resource

ACCEPTED = "accepted"
IN_PROGRESS = "in-progress"
COMPLETED = "completed"
FAILED = "failed"
OPEN_STATUSES = (ACCEPTED, IN_PROGRESS)
#: Runs of one job at most (a run whose process died is started again).
MAX_ATTEMPTS = 3


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


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


def _job(row: Any) -> ExportJob:
    return ExportJob(
        row.job_id, row.client_id, row.status, row.request, orjson.loads(row.spec), orjson.loads(row.access),
        _aware(row.transaction_time), _aware(row.created), row.writers_mark,  # type: ignore[arg-type]
        _aware(row.started), _aware(row.heartbeat), _aware(row.finished), row.exported, row.progress,
        row.attempts, row.error_status, row.error, _aware(row.expires),
    )


class ExportStore:
    """Export jobs and files, inside the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, job: ExportJob) -> None:
        """Store a new job."""
        self.connection.execute(insert(export_job).values(
            job_id=job.job_id, client_id=job.client_id, status=job.status, request=job.request,
            spec=orjson.dumps(job.spec).decode(), access=orjson.dumps(job.access).decode(),
            transaction_time=job.transaction_time, writers_mark=job.writers_mark, created=job.created,
            exported=0, progress=job.progress, attempts=0))

    def get(self, job_id: str) -> ExportJob | None:
        """A job, or None."""
        row = self.connection.execute(select(export_job).where(export_job.c.job_id == job_id)).first()
        return _job(row) if row is not None else None

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

    def beat(self, job_id: str, now: datetime, exported: int, progress: str) -> bool:
        """Record progress; False when the job is no longer this run's (cancelled, or taken over)."""
        result = self.connection.execute(
            update(export_job).where(export_job.c.job_id == job_id, export_job.c.status == IN_PROGRESS)
            .values(heartbeat=now, exported=exported, progress=progress[:500]))
        return result.rowcount == 1

    def complete(self, job_id: str, now: datetime, expires: datetime, exported: int,
                 files: Sequence[ExportFile]) -> bool:
        """Mark the job done with its files; False when it was cancelled meanwhile."""
        done = self.connection.execute(
            update(export_job).where(export_job.c.job_id == job_id, export_job.c.status == IN_PROGRESS)
            .values(status=COMPLETED, finished=now, heartbeat=now, expires=expires, exported=exported,
                    progress="Complete"))
        if done.rowcount != 1:
            return False
        if files:
            self.connection.execute(insert(export_file), [
                {"job_id": job_id, "file_name": f.file_name, "seq": f.seq, "resource_type": f.resource_type,
                 "kind": f.kind, "count": f.count, "size": f.size} for f in files])
        return True

    def fail(self, job_id: str, now: datetime, expires: datetime, status: int, error: str) -> None:
        """Mark the job failed (the status request answers ``status`` and ``error``)."""
        self.connection.execute(
            update(export_job).where(export_job.c.job_id == job_id, export_job.c.status == IN_PROGRESS)
            .values(status=FAILED, finished=now, expires=expires, error_status=status, error=error[:2000],
                    progress="Failed"))

    def fill_members(self, job_id: str, criteria: tuple[Criterion, ...]) -> int:
        """Hold the Patients matching ``criteria`` as the job's member set, with every Patient of the same
        regional persons and their golden Patients (a listed golden Patient brings its sources); how many."""
        self.clear_members(job_id)
        patients = resource.alias("member_patient")
        sql = SearchSql(probe_after_first=self.connection.dialect.name == "sqlite")
        matching = select(literal(job_id), patients.c.res_id).where(
            patients.c.resource_type == "Patient", patients.c.deleted.is_(False),
            *sql.conditions(criteria, patients, "Patient"))
        self.connection.execute(insert(export_member).from_select(["job_id", "patient_id"], matching))
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
        """PostgreSQL: the first transaction id not started yet (None elsewhere)."""
        if self.connection.dialect.name != "postgresql":
            return None
        return int(self.connection.execute(text("SELECT txid_snapshot_xmax(txid_current_snapshot())")).scalar_one())

    def writers_done(self, mark: int) -> bool:
        """PostgreSQL: True when every transaction older than ``mark`` has ended."""
        oldest = self.connection.execute(text("SELECT txid_snapshot_xmin(txid_current_snapshot())")).scalar_one()
        return int(oldest) >= mark
