"""Connections to relational sources: ODBC (pyodbc over unixODBC) or a SQLAlchemy URL.

Both give the same small interface (:class:`SourceConnection`) with ``?`` parameters.
Driver errors become :class:`ConnectionProblem` with a reason hospital IT can act on
and a message that never holds the connection string (it carries the password).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from adapters.base import ConnectionProblem

#: (reason, patterns in the SQLSTATE + driver message), checked in order.
_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("driver-missing", ("IM002", "Can't open lib", "IM003", "no default driver", "file not found")),
    ("login-failed", ("28000", "28P01", "Access denied", "password authentication failed", "role \"",
                      "Login failed", "authentication failed")),
    ("database-missing", ("Unknown database", "database \"", "Cannot open database")),
    ("host-unreachable", ("08001", "08S01", "HYT00", "Can't connect", "Connection refused", "could not connect",
                          "timeout expired", "Unknown MySQL server host", "could not translate host",
                          "Name or service not known", "No route to host", "timed out")),
    ("schema-mismatch", ("42S02", "42P01", "42S22", "42703", "no such table", "no such column",
                         "Unknown column", "doesn't exist", "does not exist", "Invalid object name",
                         "Invalid column name")),
)
_MESSAGES = {
    "driver-missing": "the ODBC driver or DSN is not installed on the hub server ({detail})",
    "login-failed": "the source refused the user name or password",
    "database-missing": "the database named in the connection does not exist on the source server",
    "host-unreachable": "the source server cannot be reached (host, port, firewall or server down)",
    "schema-mismatch": "a table or column the profile reads is missing from the source ({detail})",
    "error": "the source returned an error ({detail})",
}
_SECRET = re.compile(r"(?i)(pwd|password|passwd)\s*=\s*[^;]*")
_DRIVER_NAME = re.compile(r"(?i)driver\s*=\s*\{?([^;}]*)")


def mask_secrets(text: str) -> str:
    """``text`` with any ``PWD=…``/``password=…`` value and URL password replaced by ``***``."""
    text = _SECRET.sub(lambda m: f"{m.group(1)}=***", text)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)


def _detail(exc: BaseException) -> str:
    """The driver's message without its bracketed vendor prefixes, secrets or line breaks."""
    args = getattr(exc, "args", ())
    message = str(args[1] if len(args) > 1 else exc)
    message = re.sub(r"\[[^\]]*\]", "", message)
    message = re.sub(r"\((?:\d+|SQL\w+)\)", "", message)
    return mask_secrets(" ".join(message.split()))[:200]


def classify(exc: BaseException, *, connecting: bool) -> ConnectionProblem:
    """The reason and a secret-free message for a driver error."""
    args = getattr(exc, "args", ())
    text = " ".join(str(a) for a in args) or str(exc)
    reason = "error"
    for candidate, patterns in _CLASSES:
        if candidate == "schema-mismatch" and connecting:
            continue
        if any(pattern in text for pattern in patterns):
            reason = candidate
            break
    return ConnectionProblem(reason, _MESSAGES[reason].format(detail=_detail(exc)))


def is_odbc(connection: str) -> bool:
    """ODBC connection strings and DSNs (``DRIVER=…;`` or ``DSN=…``), as opposed to URLs."""
    return "://" not in connection.split(";", 1)[0]


class SourceConnection:
    """One open connection to a relational source; statements use ``?`` placeholders."""

    def __init__(self, connection: str, *, timeout_seconds: int = 10) -> None:
        self.odbc = is_odbc(connection)
        try:
            if self.odbc:
                import pyodbc

                self._raw = pyodbc.connect(connection, timeout=timeout_seconds, autocommit=True)
                self.dbms = str(self._raw.getinfo(pyodbc.SQL_DBMS_NAME))
                if self.dialect == "mysql":
                    # MariaDB Connector/ODBC's wide-character entry points can read past the end of a
                    # statement; its UTF-8 ones are exact (the connection character set is utf8mb4).
                    self._raw.setencoding(encoding="utf-8")
            else:
                from sqlalchemy import create_engine

                self._engine = create_engine(connection, pool_pre_ping=False)
                self._raw = self._engine.raw_connection()
                self.dbms = self._engine.dialect.name
        except ImportError as exc:
            raise ConnectionProblem("driver-missing", f"the Python driver is not installed ({exc.name})") from None
        except Exception as exc:  # driver errors have no common base class
            raise classify(exc, connecting=True) from None
        self._paramstyle = "qmark" if self.odbc else self._engine.dialect.paramstyle

    @property
    def dialect(self) -> str:
        """``mysql``, ``postgresql``, ``mssql``, ``sqlite`` or ``other`` (how LIMIT is written)."""
        name = self.dbms.lower()
        for key, dialect in (("maria", "mysql"), ("mysql", "mysql"), ("postgre", "postgresql"),
                             ("microsoft", "mssql"), ("mssql", "mssql"), ("sql server", "mssql"),
                             ("sqlite", "sqlite")):
            if key in name:
                return dialect
        return "other"

    def _statement(self, sql: str) -> str:
        if self._paramstyle in ("qmark",):
            return sql
        if self._paramstyle == "numeric":
            counter = iter(range(1, 10_000))
            return re.sub(r"\?", lambda _m: f":{next(counter)}", sql)
        return sql.replace("%", "%%").replace("?", "%s")  # format / pyformat (psycopg, pymysql)

    def rows(self, sql: str, parameters: Sequence[Any] = (), *, chunk: int = 1000) -> Iterator[dict[str, Any]]:
        """The rows of a query as dicts keyed by lower-case column names (streamed in chunks)."""
        cursor = self._raw.cursor()
        try:
            cursor.execute(self._statement(sql), tuple(parameters))
            columns = [str(d[0]).lower() for d in cursor.description or ()]
            while True:
                batch = cursor.fetchmany(chunk)
                if not batch:
                    break
                for row in batch:
                    yield dict(zip(columns, row, strict=True))
        except ConnectionProblem:
            raise
        except Exception as exc:
            raise classify(exc, connecting=False) from None
        finally:
            cursor.close()

    def columns(self, sql: str) -> list[str]:
        """The lower-case column names a query returns (run with no rows)."""
        cursor = self._raw.cursor()
        try:
            cursor.execute(self._statement(f"SELECT * FROM ({sql}) probe WHERE 1=0"))
            return [str(d[0]).lower() for d in cursor.description or ()]
        except Exception as exc:
            raise classify(exc, connecting=False) from None
        finally:
            cursor.close()

    def close(self) -> None:
        """Close the connection (errors on close are of no use to anyone)."""
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001 - the source may already be gone
            pass
        if not self.odbc:
            self._engine.dispose()


def driver_name(connection: str) -> str:
    """The ODBC driver named in a connection string ('' for a DSN or URL)."""
    found = _DRIVER_NAME.search(connection)
    return found.group(1).strip() if found else ""
