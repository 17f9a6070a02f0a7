"""Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hub.store.database import Database
from hub.store.migrate import current_revision, head_revision
from hub.store.tables import metadata


def test_database_is_at_head(database: Database) -> None:
    assert current_revision(database.engine) == head_revision(database.engine)


def test_migrations_match_the_table_definitions(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []
