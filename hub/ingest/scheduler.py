"""Runs enabled sources on their cron schedules (APScheduler, in the hub's time zone).

The scheduler re-reads the registry every ``refresh_seconds`` so that sources added,
changed or disabled through the API take effect without a restart. Several schedulers
(one per worker or host) may run: the per-source lock lets one of them run a source and
the others skip it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from adapters.base import Adapter
from hub.ingest.pipeline import IngestBusy, IngestOptions, IngestRun
from hub.store.database import Database
from hub.store.sources import SourceRecord

log = logging.getLogger("hub.ingest.scheduler")


class IngestScheduler:
    """Keeps one cron job per enabled, scheduled source."""

    def __init__(
        self,
        database: Database,
        open_adapter: Callable[[SourceRecord], Adapter],
        *,
        options: IngestOptions | None = None,
        refresh_seconds: float = 60.0,
    ) -> None:
        self.database = database
        self.open_adapter = open_adapter
        self.options = options or IngestOptions()
        self.refresh_seconds = refresh_seconds
        self.scheduler = BackgroundScheduler(timezone=database.settings.timezone)
        self._jobs: dict[str, tuple[str, object]] = {}

    def start(self) -> None:
        """Load the schedules and start running them in the background."""
        self.sync()
        self.scheduler.add_job(self.sync, "interval", seconds=self.refresh_seconds, id="hub-sync-schedules",
                               max_instances=1, coalesce=True)
        self.scheduler.start()

    def stop(self) -> None:
        """Stop scheduling (a run in progress finishes its batch and ends with the process)."""
        self.scheduler.shutdown(wait=False)

    def sync(self) -> dict[str, str]:
        """Make the jobs match the registry; the cron expression of each scheduled source."""
        with self.database.sources(write=False) as store:
            sources = {s.source_id: s for s in store.all() if s.enabled and s.schedule}
        for source_id in list(self._jobs):
            if source_id not in sources or self._jobs[source_id][0] != sources[source_id].schedule:
                self.scheduler.remove_job(f"ingest:{source_id}")
                del self._jobs[source_id]
        for source_id, source in sources.items():
            if source_id in self._jobs:
                continue
            trigger = CronTrigger.from_crontab(str(source.schedule), timezone=self.database.settings.timezone)
            job = self.scheduler.add_job(self.run_source, trigger, args=[source_id], id=f"ingest:{source_id}",
                                         max_instances=1, coalesce=True, misfire_grace_time=300)
            self._jobs[source_id] = (str(source.schedule), job)
        return {source_id: schedule for source_id, (schedule, _job) in self._jobs.items()}

    def run_source(self, source_id: str) -> str:
        """One scheduled run (skipped when the source is disabled, removed or already running)."""
        with self.database.sources(write=False) as store:
            source = store.get(source_id)
        if source is None or not source.enabled:
            return "skipped"
        try:
            result = IngestRun(self.database, source, self.open_adapter, options=self.options).run("schedule")
        except IngestBusy:
            log.info("scheduled run of %s skipped: it is already running", source_id)
            return "busy"
        return result.status
