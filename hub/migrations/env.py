"""Alembic environment: the connection comes from the caller (``hub db upgrade``)."""

from __future__ import annotations

from alembic import context

from hub.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the hub always passes its connection
    raise RuntimeError("Run migrations through `hub db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
