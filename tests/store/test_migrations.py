"""Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from hub.store.database import Database
from hub.store.migrate import current_revision, downgrade, head_revision, upgrade
from hub.store.schema import metadata


def test_database_is_at_head(database: Database) -> None:
    assert current_revision(database.engine) == head_revision()


def test_migrations_match_the_table_definitions(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    assert differences == []



def test_downgrade_and_upgrade_round_trip(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    tables = {"hub_resource", "hub_resource_version", "hub_idx_token"}
    upgrade(engine)
    assert tables <= set(inspect(engine).get_table_names())
    downgrade(engine, "base")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    engine.dispose()
