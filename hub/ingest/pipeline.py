"""One ingest run of one source: extract → check → map → build FHIR → validate (sample) → store.

Each page of source rows is one batch, and each batch is one transaction that writes the
resources, their index rows, the quarantined rows, the run's counts and the new watermark
together: a run killed at any instant leaves the store at the end of its last committed
batch, and the next run resumes exactly there. Ids are deterministic and unchanged
content creates no version, so re-reading rows is harmless.

One run per source at a time, across processes and hosts: a lease in ``hub_ingest_lock``,
renewed in every batch's transaction (a run that lost its lease cannot commit).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from adapters.base import Adapter, ConnectionProblem, Position, SourceRow
from hub.errors import Conflict, HubError
from hub.fhir.access import Access
from hub.fhir.instants import now_utc
from hub.ingest.building import BuiltPage, PageBuilder
from hub.ingest.fhir_build import SourceContext
from hub.ingest.mapping import Normalizer, SourceNormalizers
from hub.privacy import clip, mask_text
from hub.store.conflicts import ConflictStore
from hub.store.database import Database
from hub.store.sources import SourceRecord

log = logging.getLogger("hub.ingest")

#: Connection problems worth retrying (the others need a person to fix something).
RETRIED = frozenset({"host-unreachable", "login-failed", "database-missing", "error"})
Progress = Callable[[str, "RunCounts"], None]


class IngestBusy(Conflict):
    """Another run of the same source holds its lock."""


class LeaseLost(HubError):
    """The run's lock was taken over (it stalled beyond its lease): it must stop without committing."""

    status = 409
    code = "conflict"


@dataclass
class RunCounts:
    """What a run did so far."""

    records_read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0

    def add(self, other: "RunCounts") -> None:
        """Add a batch's counts."""
        for name in self.as_dict():
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return {"records_read": self.records_read, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "quarantined": self.quarantined}


@dataclass
class RunResult:
    """The end of a run."""

    run_id: int
    source_id: str
    status: str
    counts: RunCounts
    seconds: float
    error: str | None = None
    attempts: int = 1
    validated: int = 0


@dataclass
class IngestOptions:
    """How a run behaves (defaults suit production; tests shorten the waits)."""

    page_size: int = 1000
    lease_seconds: float = 120.0
    #: Connection attempts per run (the first included) and the first backoff, doubled each time.
    attempts: int = 4
    backoff_seconds: float = 2.0
    #: Validate the first resource of each type and then one in this many.
    validate_every: int = 1000
    #: Refresh the planner statistics after the first batch and then every this many resources written.
    analyze_every: int = 200_000
    sleep: Callable[[float], None] = field(default=time.sleep)


def holder_name() -> str:
    """This process, as a lock holder: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_holder(holder: str) -> bool:
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class IngestRun:
    """Runs one source once (``run``); built per run."""

    def __init__(
        self,
        database: Database,
        source: SourceRecord,
        open_adapter: Callable[[SourceRecord], Adapter],
        *,
        options: IngestOptions | None = None,
        normalizer: Normalizer | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.database = database
        self.source = source
        self.open_adapter = open_adapter
        self.options = options or IngestOptions()
        #: A fixed normalizer (tests), or None: the source's tables in force, checked before each page.
        self._fixed = normalizer
        self._normalizers = SourceNormalizers(database, source) if normalizer is None else None
        self.progress = progress
        self.counts = RunCounts()
        self.access = Access.unrestricted(f"ingest:{source.source_id}")
        self.validated = 0
        self._holder = holder_name()
        self._run_id = 0
        self._started = time.monotonic()
        self._attempts = 1
        self._written_since_analyze = 0
        #: The store's size when the run first wrote (None: not yet looked at).
        self._store_rows: int | None = None
        self._locked = True

    # -- the run ----------------------------------------------------------

    def run(self, trigger: str = "manual", kinds: Sequence[str] | None = None) -> RunResult:
        """Run the source now; raises :class:`IngestBusy` when another run holds it."""
        self.begin(trigger)
        return self.execute(kinds)

    def begin(self, trigger: str) -> int:
        """Record the run and take the source's lock (IngestBusy if held); the run id.

        Split from :meth:`execute` so that an API call can answer with the run id at once.
        """
        self._started = time.monotonic()
        self._run_id = self._begin(trigger)
        return self._run_id

    def execute(self, kinds: Sequence[str] | None = None) -> RunResult:
        """Read the source (after :meth:`begin`), record the outcome and release the lock."""
        status, error = "succeeded", None
        try:
            self._extract(kinds)
        except ConnectionProblem as problem:
            status, error = "failed", f"{problem.reason}: {problem.message}"
        except HubError as failure:
            status, error = "failed", failure.message
        except Exception as exc:  # noqa: BLE001 - a run records any failure instead of dying with it
            log.exception("ingest run %s of %s failed", self._run_id, self.source.source_id)
            status, error = "failed", f"internal error ({type(exc).__name__}); see the hub log"
        if error:
            error = clip(mask_text(error), 1000)
            log.warning("ingest run %s of %s failed: %s", self._run_id, self.source.source_id, error)
        self._end(status, error)
        return RunResult(self._run_id, self.source.source_id, status, self.counts,
                         time.monotonic() - self._started, error, self._attempts, self.validated)

    def _begin(self, trigger: str) -> int:
        now = now_utc()
        with self.database.ingest_state(write=True) as state:
            run_id = state.start_run(self.source.source_id, trigger, self._holder, now)
            lease = self.options.lease_seconds
            if not state.acquire(self.source.source_id, run_id, self._holder, now, lease):
                held = state.lock_holder(self.source.source_id) or {}
                dead = str(held.get("holder", ""))
                if not (dead and _dead_local_holder(dead)
                        and state.take_over(self.source.source_id, dead, run_id, self._holder, now, lease)):
                    raise IngestBusy(
                        f"Source {self.source.source_id} is being ingested by run {held.get('run_id')} "
                        f"({held.get('holder')}); try again when it ends"
                    )
            state.interrupt_stale(self.source.source_id, run_id, now)
        log.info("ingest run %s of %s started (%s)", run_id, self.source.source_id, trigger)
        return run_id

    def _end(self, status: str, error: str | None) -> None:
        with self.database.ingest_state(write=True) as state:
            state.finish_run(self._run_id, status, now_utc(), error, attempts=self._attempts)
            state.release(self.source.source_id, self._run_id)
        log.info("ingest run %s of %s %s: %s", self._run_id, self.source.source_id, status, self.counts.as_dict())

    # -- extraction with retries -------------------------------------------

    def _extract(self, kinds: Sequence[str] | None) -> None:
        """Read every kind; on a connection problem, reopen and resume from the last committed batch."""
        delay = self.options.backoff_seconds
        while True:
            adapter = None
            try:
                adapter = self.open_adapter(self.source)
                adapter.check()
                self._read_all(adapter, kinds)
                return
            except ConnectionProblem as problem:
                if problem.reason not in RETRIED or self._attempts >= self.options.attempts:
                    raise
                log.warning("source %s: %s; retrying in %.0f s (attempt %d of %d)", self.source.source_id,
                            problem.reason, delay, self._attempts + 1, self.options.attempts)
                self.options.sleep(delay)
                delay *= 2
                self._attempts += 1
            finally:
                if adapter is not None:
                    adapter.close()

    def begin_session(self, trigger: str) -> int:
        """Record a run that receives pushed data (an MLLP listener) without taking the pull lock."""
        self._started = time.monotonic()
        with self.database.ingest_state(write=True) as state:
            self._run_id = state.start_run(self.source.source_id, trigger, self._holder, now_utc())
        self._locked = False
        return self._run_id

    def end_session(self, error: str | None = None) -> None:
        """Close a pushed-data run."""
        with self.database.ingest_state(write=True) as state:
            state.finish_run(self._run_id, "failed" if error else "succeeded", now_utc(), error)

    def builder(self, adapter: Adapter) -> PageBuilder:
        """The page builder of this run for ``adapter`` (conversion only: it need not be connected)."""
        normalizer = self.normalizer()
        context = SourceContext(self.source.source_id, self.source.institution, adapter.name, adapter.version,
                                normalizer.version)
        return PageBuilder(adapter, context, normalizer, self.options.validate_every)

    def normalizer(self) -> Normalizer:
        """The normalizer for the next page (rebuilt when a mapping table changed meanwhile)."""
        if self._normalizers is not None:
            return self._normalizers.current()
        assert self._fixed is not None
        return self._fixed

    def _read_all(self, adapter: Adapter, kinds: Sequence[str] | None) -> None:
        builder = self.builder(adapter)
        with self.database.ingest_state(write=False) as state:
            positions = state.positions(self.source.source_id)
        for kind in adapter.kinds():
            if kinds and kind not in kinds:
                continue
            for rows in adapter.read(kind, Position.from_json(positions.get(kind)), self.options.page_size):
                builder.normalizer = self.normalizer()
                self.store_page(builder.build(kind, rows))
                acknowledge = getattr(adapter, "acknowledge", None)
                if acknowledge is not None:
                    acknowledge(rows)

    # -- one batch -----------------------------------------------------------

    def store_page(self, page: BuiltPage, *, move_watermark: bool = True) -> RunCounts:
        """Store one built page in one transaction, with its quarantined rows, counts and watermark."""
        counts = RunCounts(records_read=len(page.rows), quarantined=len(page.rejected))
        rejected = [{"source_id": self.source.source_id, "run_id": self._run_id, "record_kind": page.kind,
                     "source_key": key, "raw": raw, "reason": reason} for key, raw, reason in page.rejected]
        now = now_utc()
        with self.database.ingest_batch(self.access) as (service, state):
            if self._locked and not state.renew(self.source.source_id, self._run_id, now, self.options.lease_seconds):
                raise LeaseLost(f"Run {self._run_id} lost the lock of {self.source.source_id}; it stops here")
            if page.resources:
                for outcome in service.upsert_many(page.resources):
                    setattr(counts, outcome, getattr(counts, outcome) + 1)
            state.quarantine(rejected, now)
            if page.findings:
                ConflictStore(state.connection).record_findings(page.findings, self.source.source_id,
                                                                self.source.institution, now)
            if page.stored_keys and state.has_open(self.source.source_id):
                state.resolve(self.source.source_id, page.kind, page.stored_keys, now)
            if move_watermark and page.rows:
                state.save_position(self.source.source_id, page.kind, page.rows[-1].position.to_json(), now)
            state.add_counts(self._run_id, counts.as_dict(), now, attempts=self._attempts)
        self.counts.add(counts)
        self.validated += page.validated
        self._keep_statistics(counts.created + counts.updated)
        if self.progress is not None:
            self.progress(page.kind, self.counts)
        return counts

    def _keep_statistics(self, written: int) -> None:
        """ANALYZE whenever the run has grown the store by a tenth of what it held at the start, or has written as
        much again as before (after the first writes into an empty store; up to every ``analyze_every``): a few
        ANALYZEs keep the statistics close to a growing store, and many small runs into a large one need none
        (on PostgreSQL one costs about a second at 50,000 resources)."""
        if self._store_rows is None:  # before this first page
            self._store_rows = max(self.database.resource_rows() - written, 0)
        self._written_since_analyze += written
        total = self.counts.created + self.counts.updated
        grown = max(total - self._written_since_analyze, self._store_rows // 10, 1)
        threshold = min(grown, self.options.analyze_every)
        if written and self._written_since_analyze >= threshold:
            self.database.analyze_store()
            self._written_since_analyze = 0

    # -- replay -------------------------------------------------------------

    def replay_open(self, entry_ids: Sequence[int] = ()) -> RunResult:
        """Replay the source's open quarantine entries (only ``entry_ids`` when given)."""
        with self.database.ingest_state(write=False) as state:
            entries = state.entries(self.source.source_id, limit=1_000_000)
        return self.replay([e for e in entries if not entry_ids or e["q_id"] in entry_ids])

    def replay(self, entries: list[dict[str, object]]) -> RunResult:
        """Convert quarantined rows again (after a profile or source fix); still-bad rows stay quarantined."""
        self.begin("replay")
        status, error = "succeeded", None
        adapter = None
        try:
            adapter = self.open_adapter(self.source)
            builder = self.builder(adapter)
            by_kind: dict[str, list[SourceRow]] = {}
            for entry in entries:
                kind = str(entry["record_kind"])
                row = SourceRow(kind, str(entry["source_key"]), Position(), dict(entry["raw"]))  # type: ignore[arg-type]
                by_kind.setdefault(kind, []).append(row)
            for kind, rows in by_kind.items():
                for start in range(0, len(rows), self.options.page_size):
                    page = builder.build(kind, rows[start:start + self.options.page_size])
                    self.store_page(page, move_watermark=False)
        except ConnectionProblem as problem:
            status, error = "failed", f"{problem.reason}: {problem.message}"
        except HubError as failure:
            status, error = "failed", failure.message
        finally:
            if adapter is not None:
                adapter.close()
        self._end(status, error)
        return RunResult(self._run_id, self.source.source_id, status, self.counts,
                         time.monotonic() - self._started, error)
