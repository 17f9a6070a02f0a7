"""The export worker: runs queued Bulk Data export jobs in the background of the API process.

Each hub process runs one job at a time; several processes share the queue (a job is
claimed with a compare-and-set). A job whose run stopped beating (its process died) is
taken over and started again. Expired jobs and their files are deleted as it goes.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from hub.background import PeriodicWorker
from hub.exports.jobs import ExportJobs
from hub.exports.runner import ExportRunner
from hub.fhir.instants import now_utc

log = logging.getLogger("hub.exports")
#: A running job whose heartbeat is older than this is taken over.
STALE = timedelta(minutes=5)
#: How often expired jobs are looked for.
SWEEP_SECONDS = 300.0


class ExportWorker(PeriodicWorker):
    """Claims and runs one export job after another."""

    def __init__(self, jobs: ExportJobs, interval: float = 1.0) -> None:
        super().__init__("hub-exports", self._once, interval, log)
        self.jobs = jobs
        self.runner = ExportRunner(jobs.database, jobs.settings, jobs.files, stopping=lambda: self.stopping)
        self._swept = float("-inf")

    def _once(self) -> bool:
        if time.monotonic() - self._swept > SWEEP_SECONDS:
            self._swept = time.monotonic()
            removed = self.jobs.sweep()
            if removed:
                log.info("deleted %d expired exports", removed)
        now = now_utc()
        with self.jobs.database.exports(write=True) as store:
            job = store.claim(now, now - STALE, now + self.runner.retention)
        if job is None:
            return False
        log.info("export %s started (%s-level, client %s)", job.job_id, job.spec.get("level"), job.client_id)
        self.runner.run(job)
        return True
