"""Engines and units of work for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from hub.config import Settings
from hub.store.repository import SqlRepository


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event emit BEGIN (pysqlite's own handling is off).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front: two writers never deadlock on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if connection.info.get("hub_write") else "BEGIN")

    return engine


def create_hub_engine(settings: Settings, *, pooled: bool = True) -> Engine:
    """The SQLAlchemy engine for ``settings.database_url``."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not pooled:
        return create_engine(url, poolclass=NullPool)
    return create_engine(url, pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True)


class Database:
    """The hub's database: hands out units of work (one transaction each)."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or create_hub_engine(settings)

    @contextmanager
    def unit_of_work(self, *, write: bool) -> Iterator[SqlRepository]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.connect() as connection:
            connection.info["hub_write"] = write
            with connection.begin():
                yield SqlRepository(connection)

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
