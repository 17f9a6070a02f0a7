"""Alembic migrations of the hub's database (run with ``hub db upgrade``)."""
