"""Engines and units of work for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hub.config import Settings
from hub.errors import QueryTimeout, StorageError
from hub.fhir.access import Access
from hub.fhir.marking import ResourceMarker
from hub.fhir.protected import PersonalDataProtector
from hub.fhir.repository import FhirRepository
from hub.fhir.search_params import SearchParameters
from hub.fhir.search_values import set_local_zone
from hub.fhir.service import FhirService
from hub.privacy import DataKeyring, resolve_keyring
from hub.store.audit_log import AuditLog
from hub.store.clients import SqlClientStore
from hub.store.conflicts import ConflictStore
from hub.store.dashboard_tables import dash_change, dash_fact
from hub.store.empi import EmpiStore
from hub.store.exports import ExportStore
from hub.store.ingest_state import IngestState
from hub.store.organizations import institutions_under
from hub.store.repository import SqlRepository
from hub.store.scoped import ScopedRepository
from hub.store.sources import SqlSourceStore
from hub.store.tables import INDEX_TABLES, empi_block, empi_record, resource, resource_version
from hub.store.tele_tables import tele_task
from hub.store.telediagnosis import TeleStore

log = logging.getLogger("hub.store")
#: How often SQLite statistics are refreshed after writes.
ANALYZE_EVERY_SECONDS = 300


def _sqlite_engine(url: str, timeout_seconds: int) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's begin event emit BEGIN (pysqlite's own handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # ANALYZE samples at most this many rows per index: milliseconds even on a large file.
        cursor.execute("PRAGMA analysis_limit=1000")
        cursor.close()
        # The per-statement time limit: SQLite interrupts a statement past its deadline.
        deadline = [float("inf")]
        record.info["hub_deadline"] = deadline
        if timeout_seconds > 0:
            dbapi_connection.set_progress_handler(lambda: time.monotonic() > deadline[0], 20_000)

    @event.listens_for(engine, "before_cursor_execute")
    def _start_clock(connection: Any, *_args: Any) -> None:
        deadline = connection.info.get("hub_deadline")
        if deadline is not None:
            deadline[0] = time.monotonic() + timeout_seconds

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front: two writers never deadlock on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("hub_write") else "BEGIN")

    return engine


def create_hub_engine(settings: Settings) -> Engine:
    """The SQLAlchemy engine for ``settings.database_url``."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url, settings.query_timeout_seconds)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # No pre-ping (a round trip per request): a lost connection fails one unit of work
    # with StorageError (503) and SQLAlchemy then recycles every older connection.
    # hide_parameters: SQL errors are logged without the resource content they carried.
    # statement_timeout: a runaway query is cancelled by the server (QueryTimeout, 503).
    timeout_ms = max(0, settings.query_timeout_seconds) * 1000
    return create_engine(url, pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_recycle=3600,
                         hide_parameters=True, connect_args={"options": f"-c statement_timeout={timeout_ms}"})


def _timed_out(exc: OperationalError) -> bool:
    """Was the statement cancelled by the time limit (PostgreSQL QueryCanceled, SQLite interrupt)?"""
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return name == "QueryCanceled" or "interrupted" in str(exc.orig)


class Database:
    """The hub's database: hands out units of work (one transaction each)."""

    def __init__(self, settings: Settings, engine: Engine | None = None, keyring: DataKeyring | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_hub_engine(settings)
        self._analyzed = float("-inf")
        #: The search parameters in force, shared by this database's units of work.
        self.search_parameters = SearchParameters()
        #: Encrypts ID and phone numbers at rest and blinds them for search.
        self.protector = PersonalDataProtector(keyring or resolve_keyring(
            settings.data_keys or None, settings.data_keys_file or None,
            Path(settings.key_dir) / "data-keys.json", settings.production,
        ))
        #: The audit trail (written in the background).
        self.audit = AuditLog(self.engine, retention_days=settings.audit_retention_days)
        #: Markers set on every version written (``factory(connection)`` per unit of work; the layers
        #: that own their rules add theirs, as :func:`hub.recognition.install` does).
        self.markers: list[Callable[[Connection], ResourceMarker]] = []
        self._reach: dict[frozenset[str], tuple[object, frozenset[str]]] = {}
        set_local_zone(settings.timezone)
        self._takes_xid = self.engine.dialect.name == "postgresql"
        self._autocommit_reads = (
            None if self.engine.dialect.name == "sqlite" else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @contextmanager
    def unit_of_work(self, *, write: bool, access: Access | None = None,
                     reveal: bool = True) -> Iterator[FhirRepository]:
        """A transaction: committed when the block ends, rolled back if it raises.

        With a limited ``access`` (institution-bound, or not an administrator), the repository shows
        only what it may see.
        ``reveal`` False reads contents as stored, ID and phone numbers still sealed (for files
        the hub writes, revealed when they are served).
        """
        with self._unit(write=write, access=access, reveal=reveal) as (_connection, repository):
            yield repository

    @contextmanager
    def _unit(self, *, write: bool, access: Access | None = None,
              reveal: bool = True) -> Iterator[tuple[Connection, FhirRepository]]:
        with self.connection(write=write) as connection:
            repository = SqlRepository(connection, self.protector if reveal else None)
            if access is not None and access.limited:
                yield connection, ScopedRepository(repository, access)
            else:
                yield connection, repository

    def _service(self, connection: Connection, repository: FhirRepository, access: Access | None = None,
                 settings: Settings | None = None) -> FhirService:
        """A :class:`FhirService` on ``repository`` with this database's search parameters and markers."""
        settings = settings or self.settings
        return FhirService(
            repository,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            search_parameters=self.search_parameters,
            access=access,
            protector=self.protector,
            markers=[factory(connection) for factory in self.markers],
        )

    @contextmanager
    def fhir_service(
        self, *, write: bool, access: Access | None = None, settings: Settings | None = None
    ) -> Iterator[FhirService]:
        """A :class:`FhirService` for ``access`` (default: unrestricted) inside one unit of work.

        ``settings`` (default: the database's) gives the page sizes.
        """
        with self._unit(write=write, access=access) as (connection, repository):
            yield self._service(connection, repository, access, settings)

    @contextmanager
    def sources(self, *, write: bool) -> Iterator[SqlSourceStore]:
        """The registered source systems (connections decrypted in memory), inside one transaction."""
        with self.connection(write=write) as connection:
            yield SqlSourceStore(connection, self.protector.keyring)

    @contextmanager
    def ingest_state(self, *, write: bool) -> Iterator[IngestState]:
        """Watermarks, runs, locks and quarantine, inside one transaction."""
        with self.connection(write=write) as connection:
            yield IngestState(connection, self.protector.keyring)

    @contextmanager
    def ingest_batch(self, access: Access | None = None) -> Iterator[tuple[FhirService, IngestState]]:
        """One ingest batch: resources, index rows, watermark, counts and quarantine in one transaction."""
        with self.connection(write=True) as connection:
            service = self._service(connection, SqlRepository(connection, self.protector), access)
            yield service, IngestState(connection, self.protector.keyring)

    @contextmanager
    def review_batch(self) -> Iterator[tuple[FhirService, ConflictStore]]:
        """A mapping decision (the conflict, the mapping table and the decision log), or a batch of its
        re-normalization (the resources and the conflicts they still raise), in one transaction."""
        with self.connection(write=True) as connection:
            service = self._service(connection, SqlRepository(connection, self.protector))
            yield service, ConflictStore(connection)

    @contextmanager
    def tele_batch(self) -> Iterator[tuple[FhirService, TeleStore]]:
        """A step of tele-diagnosis work: the reading Tasks and reports it writes and its tables, in one
        transaction."""
        with self.connection(write=True) as connection:
            service = self._service(connection, SqlRepository(connection, self.protector))
            yield service, TeleStore(connection)

    @contextmanager
    def empi_batch(self, *, write: bool = True) -> Iterator[tuple[FhirService, EmpiStore]]:
        """A unit of EMPI work: its tables and the golden Patients it writes, in one transaction.

        Its own Patient writes (golden records) are not queued back to it.
        """
        with self.connection(write=write) as connection:
            service = self._service(connection, SqlRepository(connection, self.protector, empi_queue=False))
            yield service, EmpiStore(connection)

    @contextmanager
    def empi(self, *, write: bool) -> Iterator[EmpiStore]:
        """The EMPI tables alone (review lists, history), inside one transaction."""
        with self.connection(write=write) as connection:
            yield EmpiStore(connection)

    @contextmanager
    def conflicts(self, *, write: bool) -> Iterator[ConflictStore]:
        """The mapping conflicts and decisions, inside one transaction."""
        with self.connection(write=write) as connection:
            yield ConflictStore(connection)

    @contextmanager
    def exports(self, *, write: bool) -> Iterator[ExportStore]:
        """Bulk Data export jobs, inside one transaction."""
        with self.connection(write=write) as connection:
            yield ExportStore(connection, self.protector.keyring)

    @contextmanager
    def clients(self, *, write: bool) -> Iterator[SqlClientStore]:
        """The registered API clients, inside one transaction."""
        with self.connection(write=write) as connection:
            yield SqlClientStore(connection)

    def reach(self, *root_sets: frozenset[str]) -> tuple[frozenset[str], ...]:
        """For each set of Organization ids, those ids and every institution under them (a principal's
        own institutions, its consortia), all in one unit of work.

        Cached until an Organization changes (one indexed query per call checks that).
        """
        with self.unit_of_work(write=False) as repository:
            stamp = repository.type_stamp("Organization")
            found = []
            for roots in root_sets:
                cached = self._reach.get(roots)
                if cached is None or cached[0] != stamp:
                    if len(self._reach) > 10_000:
                        self._reach.clear()
                    cached = self._reach[roots] = (stamp, institutions_under(repository, roots))
                found.append(cached[1])
        return tuple(found)

    @contextmanager
    def connection(self, *, write: bool) -> Iterator[Connection]:
        """A connection in one transaction: committed when the block ends, rolled back if it raises.

        On PostgreSQL a read-only unit runs in autocommit: under READ COMMITTED every
        statement takes its own snapshot anyway, and it saves two round trips.
        """
        try:
            if not write and self._autocommit_reads is not None:
                with self._autocommit_reads.connect() as connection:
                    yield connection
                return
            with self.engine.connect() as connection:
                connection.info["hub_write"] = write
                with connection.begin():
                    if write and self._takes_xid:
                        # A transaction id from the start (PostgreSQL assigns one at the first write): an export
                        # waits for every writer that began before its kick-off (hub.store.exports.writers_done),
                        # and a writer's lastUpdated values are taken after it began.
                        connection.exec_driver_sql("SELECT txid_current()")
                    yield connection
            if write:
                self.refresh_statistics()
        except OperationalError as exc:
            if _timed_out(exc):
                log.warning("query cancelled after %s s", self.settings.query_timeout_seconds)
                raise QueryTimeout(
                    f"The query ran longer than the {self.settings.query_timeout_seconds} s limit and was cancelled; "
                    "narrow the search (more criteria, smaller _count)"
                ) from None
            # Lost connections (the pool then drops every stale one) and lock timeouts:
            # nothing was committed, and the client may simply retry.
            log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
            raise StorageError("The database is unavailable or busy; nothing was changed, try again") from None

    def refresh_statistics(self, *, force: bool = False) -> None:
        """Keep the SQLite planner's statistics current (sampled ANALYZE, at most every few minutes).

        Without them SQLite cannot tell a patient's references from a lab code shared by
        forty thousand results, and picks slow plans. PostgreSQL's autovacuum does this itself.
        """
        if self.engine.dialect.name != "sqlite":
            return
        now = time.monotonic()
        if not force and now - self._analyzed < ANALYZE_EVERY_SECONDS:
            return
        self._analyzed = now
        try:
            with self.engine.begin() as connection:  # committed: ANALYZE writes sqlite_stat1
                connection.exec_driver_sql("ANALYZE")
        except OperationalError as exc:  # busy: the next write tries again
            log.info("statistics not refreshed: %s", type(exc.orig).__name__ if exc.orig else exc)

    def resource_rows(self) -> int:
        """About how many resources the store holds (the highest row key: one index probe, not a count)."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.max(resource.c.res_pk))).scalar() or 0)

    def analyze_store(self) -> None:
        """Refresh the planner statistics of the FHIR, EMPI, reading-task and dashboard tables now (after a bulk
        load).

        PostgreSQL's autovacuum does this eventually, but a load of a few hundred thousand
        resources outruns it (and it may be off): without statistics, the prepared lookups of
        a load's next batches fall back to scanning the growing table.
        """
        if self.engine.dialect.name != "postgresql":
            self.refresh_statistics(force=True)
            return
        self.analyze(resource, resource_version, *INDEX_TABLES.values(), empi_record, empi_block, tele_task, dash_fact,
                     dash_change)

    def analyze(self, *tables: Table, vacuum: bool = False) -> None:
        """Refresh the planner statistics of ``tables`` now (PostgreSQL; SQLite's are refreshed whole); with
        ``vacuum``, after a bulk rewrite, also reclaim the dead rows and mark pages all-visible (index-only scans)."""
        if self.engine.dialect.name != "postgresql":
            self.refresh_statistics(force=True)
            return
        try:
            with self.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    ("VACUUM ANALYZE " if vacuum else "ANALYZE ") + ", ".join(t.name for t in tables))
        except OperationalError as exc:
            log.info("statistics not refreshed: %s", type(exc.orig).__name__ if exc.orig else exc)

    def dispose(self) -> None:
        """Write the queued audit events and close every pooled connection."""
        self.audit.stop()
        self.engine.dispose()
