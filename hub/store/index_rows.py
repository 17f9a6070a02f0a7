"""Bulk insertion of rows (COPY on PostgreSQL), and the search-index rows of resource versions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, insert

from hub.fhir.repository import IndexValues
from hub.store.search_sql import token_hash, token_scope
from hub.store.tables import INDEX_TABLES

#: Above this many rows, rows go to PostgreSQL with COPY.
COPY_THRESHOLD = 50

try:  # what COPY raises for a unique or foreign-key violation (not wrapped by SQLAlchemy)
    from psycopg.errors import IntegrityError as DriverIntegrityError
except ImportError:  # pragma: no cover - PostgreSQL support not installed
    class DriverIntegrityError(Exception):  # type: ignore[no-redef]
        """Never raised without psycopg."""


def insert_index_rows(connection: Connection, items: Sequence[tuple[str, int, IndexValues]]) -> None:
    """Insert the index rows of resources (type, key, values): COPY on PostgreSQL, executemany elsewhere."""
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in INDEX_TABLES}
    for resource_type, pk, values in items:
        _index_rows(resource_type, pk, values, rows)
    for name, table_rows in rows.items():
        insert_rows(connection, INDEX_TABLES[name], table_rows, plain_values=True)


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]], *, plain_values: bool = False) -> None:
    """Insert many rows of one table (same keys): COPY on PostgreSQL; with ``plain_values`` (numbers and
    text only, nothing SQLAlchemy must convert) a plain executemany on SQLite, whose per-row parameter
    handling in SQLAlchemy costs more than the insert."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect == "postgresql" and len(rows) > COPY_THRESHOLD:
        _copy_rows(connection, table, rows)
    elif dialect == "sqlite" and plain_values:
        columns = list(rows[0])
        connection.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [tuple(row[c] for c in columns) for row in rows],
        )
    else:
        connection.execute(insert(table), rows)


def _copy_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Bulk-load rows with COPY (an executemany costs a round of binding per row)."""
    columns = list(rows[0])
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(
        f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _index_rows(resource_type: str, pk: int, index: IndexValues, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Append the rows of each index table for one resource version."""
    base = {"res_pk": pk, "resource_type": resource_type}
    for token in index.tokens:
        scope = token_scope(resource_type, token.param)
        rows["token"].append({
            **base, "param": token.param, "system": token.system, "value": token.value,
            "hash_sys_value": token_hash(scope, token.param, token.system, token.value),
            "hash_value": token_hash(scope, token.param, token.value),
            "hash_sys": token_hash(scope, token.param, token.system),
        })
    rows["string"].extend({**base, "param": s.param, "value_norm": s.normalized, "value_exact": s.exact}
                          for s in index.strings)
    rows["date"].extend({**base, "param": d.param, "low": d.low, "high": d.high} for d in index.dates)
    rows["number"].extend({**base, "param": n.param, "low": n.low, "high": n.high, "system": n.system,
                           "code": n.code} for n in index.numbers)
    rows["uri"].extend({**base, "param": u.param, "value": u.value} for u in index.uris)
    rows["reference"].extend({**base, "param": r.param, "target_type": r.target_type, "target_id": r.target_id,
                              "url": r.url} for r in index.references)
