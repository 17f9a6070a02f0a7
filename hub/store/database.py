"""Engines and units of work for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from hub.config import Settings
from hub.errors import StorageError
from hub.fhir.search_params import SearchParameters
from hub.fhir.search_values import set_local_zone
from hub.store.repository import SqlRepository

log = logging.getLogger("hub.store")
#: How often SQLite statistics are refreshed after writes.
ANALYZE_EVERY_SECONDS = 300


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
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

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front: two writers never deadlock on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("hub_write") else "BEGIN")

    return engine


def create_hub_engine(settings: Settings) -> Engine:
    """The SQLAlchemy engine for ``settings.database_url``."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # No pre-ping (a round trip per request): a lost connection fails one unit of work
    # with StorageError (503) and SQLAlchemy then recycles every older connection.
    # hide_parameters: SQL errors are logged without the resource content they carried.
    return create_engine(url, pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_recycle=3600,
                         hide_parameters=True)


class Database:
    """The hub's database: hands out units of work (one transaction each)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_hub_engine(settings)
        self._analyzed = float("-inf")
        #: The search parameters in force, shared by this database's units of work.
        self.search_parameters = SearchParameters()
        set_local_zone(settings.timezone)
        self._autocommit_reads = (
            None if self.engine.dialect.name == "sqlite" else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @contextmanager
    def unit_of_work(self, *, write: bool) -> Iterator[SqlRepository]:
        """A transaction: committed when the block ends, rolled back if it raises.

        On PostgreSQL a read-only unit runs in autocommit: under READ COMMITTED every
        statement takes its own snapshot anyway, and it saves two round trips.
        """
        try:
            if not write and self._autocommit_reads is not None:
                with self._autocommit_reads.connect() as connection:
                    yield SqlRepository(connection)
                return
            with self.engine.connect() as connection:
                connection.info["hub_write"] = write
                with connection.begin():
                    yield SqlRepository(connection)
            if write:
                self.refresh_statistics()
        except OperationalError as exc:
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

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
