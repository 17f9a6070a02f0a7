"""Schema migrations through Alembic (``hub db upgrade``)."""

from __future__ import annotations

from importlib import resources as importlib_resources

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text


def alembic_config() -> Config:
    """An Alembic config for the hub's migrations (the caller passes its connection)."""
    config = Config()
    config.set_main_option("script_location", str(importlib_resources.files("hub") / "migrations"))
    return config


#: PostgreSQL advisory lock serializing hub processes that migrate at the same time (containers starting).
MIGRATION_LOCK = 0x48554201


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (on PostgreSQL one process at a time: others wait, then
    find the schema current)."""
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database schema back to ``revision`` (``base``: no hub tables)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at (None if never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
