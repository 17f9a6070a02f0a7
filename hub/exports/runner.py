"""Running one export job in the background: each planned type paged by storage key into NDJSON files.

Memory stays flat whatever the size of the export: one page of stored JSON (1,000
resources) is read, written to the type's file and dropped before the next. The export
stands for its ``transactionTime``: the run first waits until every write transaction that
was open at kick-off has ended (so nothing committed later with an earlier ``lastUpdated``
is missed by the next ``_since`` export), resources created after it are left out, and a
resource changed after it is exported as it was then. (Filters — ``_typeFilter``, the patient
and group levels — are tested on the current version.)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hub.config import Settings
from hub.errors import HubError, Issue, StorageError
from hub.exports.files import ExportFiles, NdjsonWriter
from hub.exports.planning import plan_export
from hub.fhir.access import Access
from hub.fhir.bulk import ExportRequest
from hub.fhir.criteria import Criterion
from hub.fhir.instants import now_utc
from hub.fhir.outcome import operation_outcome
from hub.fhir.repository import FhirRepository, SearchSpec, StoredResource
from hub.fhir.subsetting import ElementSelection, parse_elements, subset
from hub.store.database import Database
from hub.store.exports import IN_PROGRESS, ExportJob

log = logging.getLogger("hub.exports")
#: Resources read per page.
PAGE = 1000
#: How often a running job records its progress (and learns that it was cancelled).
BEAT_SECONDS = 2.0
#: Groups of at most this many member Patients have their resources looked up by reference; larger ones
#: are found by testing every resource of each type (one pass, whatever the size).
FEW_MEMBERS = 2000
#: How long a run waits for write transactions that were open at kick-off.
WRITERS_WAIT_SECONDS = 60.0


class JobGone(Exception):
    """The job was cancelled, or another process took it over, while it ran."""


class Stopping(Exception):
    """The hub process is stopping: the job goes back to the queue."""


@dataclass
class _Run:
    """One run of a job: its progress, and when it last said so."""

    job: ExportJob
    exported: int = 0
    beaten: float = field(default_factory=time.monotonic)


class ExportRunner:
    """Runs claimed export jobs."""

    def __init__(self, database: Database, settings: Settings, files: ExportFiles,
                 clock: Callable[[], datetime] = now_utc, stopping: Callable[[], bool] = lambda: False) -> None:
        self.database = database
        self.files = files
        self.retention = timedelta(hours=settings.export_retention_hours)
        self.clock = clock
        #: True when the process is stopping (checked between pages).
        self.stopping = stopping

    def run(self, job: ExportJob) -> None:
        """Run a job to its end: completed with its files, failed with the reason, gone (cancelled or taken
        over: this run's files are removed), or back in the queue when the process stops."""
        try:
            self._run(job)
        except JobGone:
            self._gone(job)
        except Stopping:
            self.files.remove(job.job_id, job.attempts)
            with self.database.exports(write=True) as store:
                store.release(job)
            log.info("export %s goes back to the queue: the hub is stopping", job.job_id)
        except HubError as error:
            self._fail(job, error.status, error.message)
        except Exception:
            if not self._still_ours(job):  # cancelled under its feet (its directory or members went)
                self._gone(job)
                return
            reference = uuid.uuid4().hex[:12]
            log.exception("export %s failed (reference %s)", job.job_id, reference)
            self._fail(job, 500, f"The export failed on an internal error (reference {reference})")

    def _run(self, job: ExportJob) -> None:
        started = time.monotonic()
        request = ExportRequest.from_json(job.spec)
        access = Access.from_json(job.access)
        self._wait_for_writers(job)
        with self.database.fhir_service(write=False, access=access) as service:
            plan = plan_export(service, self.database, request)
        selection = parse_elements(request.elements, plan.types) if request.elements else None
        members = 0
        if plan.membership is not None:
            with self.database.exports(write=True) as store:
                members = store.fill_members(job.job_id, plan.membership.patients)
        writer = self.files.writer(job.job_id, job.attempts)
        run = _Run(job)
        try:
            for reference in plan.membership.ignored if plan.membership else ():
                writer.error(operation_outcome([Issue(
                    "not-supported", f"Group member {reference} is not a Patient; left out", "warning")]))
            for index, resource_type in enumerate(plan.types):
                criteria = plan.criteria(resource_type, job.job_id, few_members=members <= FEW_MEMBERS)
                self._export_type(run, access, request, resource_type, criteria, selection, writer,
                                  f"{resource_type} ({index + 1} of {len(plan.types)} types)")
                writer.finish_type(resource_type)
        finally:
            files = writer.close()
        now = self.clock()
        with self.database.exports(write=True) as store:
            if not store.complete(job, now, now + self.retention, run.exported, files):
                raise JobGone
            store.clear_members(job.job_id)
        log.info("export %s completed: %d resources in %d files, %.1f s", job.job_id, run.exported,
                 len(files), time.monotonic() - started)

    def _export_type(self, run: _Run, access: Access, request: ExportRequest, resource_type: str,
                     criteria: tuple[Criterion, ...], selection: ElementSelection | None, writer: NdjsonWriter,
                     label: str) -> None:
        after: int | None = None
        while True:
            if self.stopping():
                raise Stopping
            with self.database.unit_of_work(write=False, access=access, reveal=False) as repository:
                page = repository.search(SearchSpec(resource_type, criteria, count=PAGE, after=after))
                contents = [c for c in (self._as_of(repository, stored, run.job.transaction_time, request)
                                        for stored in page) if c is not None]
            for content in contents:
                writer.write(resource_type, subset(content, None, selection) if selection else content)
            run.exported += len(contents)
            self._beat(run, label)
            if len(page) < PAGE:
                return
            after = page[-1].pk

    @staticmethod
    def _as_of(repository: FhirRepository, stored: StoredResource, moment: datetime,
               request: ExportRequest) -> bytes | None:
        """The JSON of ``stored`` as it was at the transaction time (None: it did not exist then, or it
        was deleted, or that version is not newer than ``_since``)."""
        if stored.last_updated <= moment:
            return stored.content
        then = repository.version_at(stored.resource_type, stored.id, moment)
        if then is None or then.deleted or (request.since is not None and then.last_updated <= request.since):
            return None
        return then.content

    def _beat(self, run: _Run, label: str) -> None:
        if time.monotonic() - run.beaten < BEAT_SECONDS:
            return
        run.beaten = time.monotonic()
        with self.database.exports(write=True) as store:
            alive = store.beat(run.job, self.clock(), run.exported,
                               f"{run.exported:,} resources exported; now {label}")
        if not alive:
            raise JobGone

    def _wait_for_writers(self, job: ExportJob) -> None:
        """Wait until every write transaction open at kick-off has ended (503 after a minute)."""
        if job.writers_mark is None:  # SQLite: taking the write lock waits for the writer of the moment
            with self.database.connection(write=True):
                return
        deadline = time.monotonic() + WRITERS_WAIT_SECONDS
        while True:
            with self.database.exports(write=False) as store:
                if store.writers_done(job.writers_mark):
                    return
            if time.monotonic() > deadline:
                raise StorageError(f"A write transaction that was open when the export was asked for has not ended "
                                   f"within {WRITERS_WAIT_SECONDS:.0f} s; ask again")
            time.sleep(0.2)

    def _still_ours(self, job: ExportJob) -> bool:
        with self.database.exports(write=False) as store:
            current = store.get(job.job_id)
        return current is not None and current.status == IN_PROGRESS and current.attempts == job.attempts

    def _gone(self, job: ExportJob) -> None:
        with self.database.exports(write=False) as store:
            cancelled = store.get(job.job_id) is None
        self.files.remove(job.job_id, None if cancelled else job.attempts)
        log.info("export %s was %s; this run's files are removed", job.job_id,
                 "cancelled" if cancelled else "taken over by another run")

    def _fail(self, job: ExportJob, status: int, message: str) -> None:
        self.files.remove(job.job_id, job.attempts)
        now = self.clock()
        with self.database.exports(write=True) as store:
            if store.fail(job, now, now + self.retention, status, message):
                store.clear_members(job.job_id)
                log.warning("export %s failed: %s", job.job_id, message)
