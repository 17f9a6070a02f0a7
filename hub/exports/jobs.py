"""Bulk Data export jobs for the API: kick-off, status and manifest, files, cancel.

A job belongs to the client that asked: only that client sees its status, fetches its
files or cancels it (to anyone else the job does not exist). The files are written in the
background (:mod:`hub.exports.worker`) and deleted after ``HUB_EXPORT_RETENTION_HOURS``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from hub.config import Settings
from hub.errors import NotFound, TooManyRequests
from hub.exports.files import ExportFiles
from hub.exports.planning import plan_export
from hub.fhir.access import Access
from hub.fhir.bulk import OutputFile, manifest, parse_kickoff
from hub.fhir.instants import now_utc
from hub.store.database import Database
from hub.store.exports import ACCEPTED, COMPLETED, ExportJob

#: Seconds a client is told to wait between status requests.
POLL_SECONDS = 2


@dataclass(frozen=True)
class Kickoff:
    """An export request as the API received it."""

    level: str
    group_id: str | None
    params: Sequence[tuple[str, str]]
    #: The full kick-off URL (the manifest's ``request``).
    url: str
    lenient: bool = False


class ExportJobs:
    """The export jobs of one hub: what the API calls."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.files = ExportFiles(settings.export_dir, settings.export_file_resources)

    def kick_off(self, access: Access, kickoff: Kickoff) -> str:
        """Check the request and plan it for ``access`` (400/403/404 now, not later), then queue it;
        the new job's id. 429 when the client already has its share of open jobs."""
        request = parse_kickoff(kickoff.level, kickoff.group_id, kickoff.params, lenient=kickoff.lenient)
        with self.database.fhir_service(write=False, access=access) as service:
            plan_export(service, self.database, request)
        job_id = str(uuid.uuid4())
        with self.database.exports(write=True) as store:
            if store.open_jobs(access.principal) >= self.settings.export_jobs_per_client:
                raise TooManyRequests(f"This client already has {self.settings.export_jobs_per_client} exports "
                                      "queued or running; wait for one to finish, or cancel one", retry_after=60)
            now = now_utc()
            store.add(ExportJob(job_id, access.principal, ACCEPTED, kickoff.url, request.as_json(), access.as_json(),
                                now, now, store.writers_mark(), progress="Queued"))
        return job_id

    def job(self, job_id: str, client_id: str) -> ExportJob:
        """The client's job (404 for another client's, or one that expired or was cancelled)."""
        self.files.job_dir(job_id)  # a well-formed id, or 404
        with self.database.exports(write=False) as store:
            found = store.get(job_id)
        if found is None or found.client_id != client_id:
            raise NotFound("No such export (it may have expired, been cancelled, or belong to another client)")
        return found

    def manifest(self, job: ExportJob, base_url: str) -> dict[str, object]:
        """The completion manifest of a completed job, its file URLs under ``base_url``."""
        with self.database.exports(write=False) as store:
            files = store.files(job.job_id)
        located = [(f, OutputFile(f.resource_type, f"{base_url}/$export-file/{job.job_id}/{f.file_name}", f.count))
                   for f in files]
        return manifest(job.transaction_time, job.request, [o for f, o in located if f.kind == "output"],
                        [o for f, o in located if f.kind == "error"])

    def cancel(self, job_id: str, client_id: str) -> None:
        """Cancel (a running job stops at its next page) and delete the job with its files."""
        self.job(job_id, client_id)
        with self.database.exports(write=True) as store:
            store.delete(job_id)
        self.files.remove(job_id)

    def read_file(self, job_id: str, file_name: str, client_id: str) -> Iterator[bytes]:
        """A file of the client's completed job, as NDJSON bytes with personal data revealed."""
        job = self.job(job_id, client_id)
        if job.status != COMPLETED:
            raise NotFound("The export is not complete; its files are listed in the manifest when it is")
        return self.files.read(job_id, job.attempts, file_name, self.database.protector)

    def sweep(self, now: datetime | None = None) -> int:
        """Delete expired jobs with their files, and directories no job owns (a run cut off by a cancel)."""
        now = now or now_utc()
        directories = self.files.directories()  # before the jobs: a job's row always exists before its directory
        with self.database.exports(write=True) as store:
            expired = store.expired(now)
            for job_id in expired:
                store.delete(job_id)
            known = store.job_ids()
        for job_id in expired:
            self.files.remove(job_id)
        for job_id in directories:
            if job_id not in known:
                self.files.remove(job_id)
        return len(expired)
