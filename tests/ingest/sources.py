"""Real source databases for the ingest tests: MariaDB and PostgreSQL over their ODBC drivers.

Each test module gets its own database on the local servers (``hub_src_<name>``), created
fresh; the servers must be there (the tests fail, never skip, when they are not).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyodbc

MARIADB = os.environ.get("HUB_TEST_MARIADB_ODBC", "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=;CHARSET=utf8mb4;")
POSTGRES = os.environ.get("HUB_TEST_POSTGRES_ODBC", "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;")
SERVERS = {"mariadb": MARIADB, "postgresql": POSTGRES}


def connection_string(server: str, database: str) -> str:
    """The ODBC connection string of ``database`` on ``server`` (mariadb or postgresql)."""
    return f"{SERVERS[server]}DATABASE={database};"


def create_database(server: str, database: str) -> str:
    """Drop and create ``database``; its ODBC connection string."""
    admin_db = "postgres" if server == "postgresql" else "mysql"
    with pyodbc.connect(connection_string(server, admin_db), autocommit=True, timeout=10) as admin:
        cursor = admin.cursor()
        if server == "postgresql":
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ?", database)
        cursor.execute(f"DROP DATABASE IF EXISTS {database}")
        cursor.execute(f"CREATE DATABASE {database}" + (" CHARACTER SET utf8mb4" if server == "mariadb" else ""))
    return connection_string(server, database)


@contextmanager
def source(connection: str) -> Iterator[pyodbc.Cursor]:
    """A cursor on a source database (autocommit)."""
    with pyodbc.connect(connection, autocommit=True, timeout=10) as raw:
        if "MariaDB" in connection:  # its Unicode entry points may read past the end of a statement
            raw.setencoding(encoding="utf-8")
        yield raw.cursor()


def run_script(connection: str, statements: Sequence[str]) -> None:
    """Run DDL statements one by one."""
    with source(connection) as cursor:
        for statement in statements:
            cursor.execute(statement)


def insert_rows(connection: str, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert dict rows (all with the same keys)."""
    if not rows:
        return
    columns = list(rows[0])
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    with source(connection) as cursor:
        cursor.fast_executemany = False
        cursor.executemany(sql, [tuple(row[c] for c in columns) for row in rows])


def execute(connection: str, sql: str, *parameters: Any) -> None:
    """One statement."""
    with source(connection) as cursor:
        cursor.execute(sql, *parameters)
