"""The declarative SQL adapter: a vendor profile read over ODBC or a SQLAlchemy URL.

Reads are incremental and paged by keyset: each page is one query for rows whose
(update time, key) comes after the last row of the previous page, so memory stays
bounded whatever the table's size and a rerun resumes exactly where a run stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import CanonicalRecord, ConnectionProblem, Position, RecordProblem, SourceConfig, SourceRow
from adapters.fields import build_lab_result, build_record, json_value
from adapters.sql.connection import SourceConnection
from adapters.sql.profile import KindSpec, Profile, load_profile

#: At most this many parent keys go into one child query.
_CHILD_CHUNK = 500


def _limit(dialect: str, sql: str, size: int) -> str:
    if dialect == "mssql":
        return sql.replace("SELECT ", f"SELECT TOP {int(size)} ", 1)
    if dialect == "other":
        return f"{sql} FETCH FIRST {int(size)} ROWS ONLY"
    return f"{sql} LIMIT {int(size)}"


class SqlProfileAdapter:
    """An :class:`adapters.base.Adapter` driven by a :class:`Profile`."""

    def __init__(self, config: SourceConfig, profile: Profile) -> None:
        self.config = config
        self.profile = profile
        self.name = profile.name
        self.version = profile.version
        self._zone = ZoneInfo(profile.timezone)
        self._connection: SourceConnection | None = None

    # -- connection ------------------------------------------------------

    def _open(self) -> SourceConnection:
        if self._connection is None:
            timeout = int(self.config.options.get("timeout_seconds", 10))
            self._connection = SourceConnection(self.config.connection, timeout_seconds=timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def kinds(self) -> tuple[str, ...]:
        wanted = self.config.options.get("kinds")
        return tuple(k for k in self.profile.kinds if not wanted or k in wanted)

    def check(self) -> None:
        connection = self._open()
        for kind in self.kinds():
            spec = self.profile.kinds[kind]
            self._require(connection, kind, spec.query, spec.columns())
            for child in spec.children:
                columns = {child.parent, child.key} | {f.column for f in child.fields.values() if f.column}
                self._require(connection, f"{kind}.{child.name}", child.query.replace("{parents}", "NULL"), columns)

    @staticmethod
    def _require(connection: SourceConnection, where: str, query: str, columns: set[str]) -> None:
        try:
            present = set(connection.columns(query))
        except ConnectionProblem as problem:
            raise ConnectionProblem(problem.reason, f"{where}: {problem.message}") from None
        missing = sorted(columns - present)
        if missing:
            raise ConnectionProblem(
                "schema-mismatch", f"{where}: the query returns no column {', '.join(missing)} that the profile maps"
            )

    # -- reading ---------------------------------------------------------

    def read(self, kind: str, after: Position, page_size: int) -> Iterator[list[SourceRow]]:
        spec = self.profile.kinds[kind]
        connection = self._open()
        while True:
            sql = f"SELECT * FROM ({spec.query}) src"
            parameters: list[Any] = []
            if after.started:
                sql += f" WHERE (src.{spec.updated} > ? OR (src.{spec.updated} = ? AND src.{spec.key} > ?))"
                parameters = [after.updated_at, after.updated_at, after.key]
            sql = _limit(connection.dialect, f"{sql} ORDER BY src.{spec.updated}, src.{spec.key}", page_size)
            rows = list(connection.rows(sql, parameters, chunk=page_size))
            if not rows:
                return
            page = [self._source_row(spec, row) for row in rows]
            if spec.children:
                self._attach_children(connection, spec, page)
            yield page
            last = rows[-1]
            after = Position(last[spec.updated], last[spec.key])
            if len(rows) < page_size:
                return

    def _source_row(self, spec: KindSpec, row: Mapping[str, Any]) -> SourceRow:
        raw = {column: json_value(value) for column, value in row.items()}
        return SourceRow(spec.kind, str(raw[spec.key]), Position(row[spec.updated], row[spec.key]), raw)

    def _attach_children(self, connection: SourceConnection, spec: KindSpec, page: list[SourceRow]) -> None:
        keys = [row.raw[spec.key] for row in page]
        for child in spec.children:
            found: dict[str, list[dict[str, Any]]] = {}
            for start in range(0, len(keys), _CHILD_CHUNK):
                chunk = keys[start:start + _CHILD_CHUNK]
                query = child.query.replace("{parents}", ", ".join("?" for _ in chunk))
                for row in connection.rows(query, chunk):
                    found.setdefault(str(row[child.parent]), []).append(
                        {column: json_value(value) for column, value in row.items()}
                    )
            for row in page:
                children = sorted(found.get(row.key, ()), key=lambda r: str(r[child.key]))
                row.raw[child.name] = children  # type: ignore[index]  # built just above as a dict

    # -- converting ------------------------------------------------------

    def convert(self, row: SourceRow) -> CanonicalRecord:
        spec = self.profile.kinds.get(row.kind)
        if spec is None:
            raise RecordProblem(f"the profile does not read {row.kind}")
        values = {name: field.read(row.raw, name) for name, field in spec.fields.items()}
        values["key"] = row.raw.get(spec.key)
        values["updated_at"] = row.raw.get(spec.updated)
        for child in spec.children:
            items = []
            for number, raw in enumerate(row.raw.get(child.name) or (), start=1):
                child_values = {name: field.read(raw, name) for name, field in child.fields.items()}
                child_values["key"] = raw.get(child.key)
                hook = self.profile.hooks.get(f"{row.kind}.{child.name}")
                if hook is not None:
                    child_values = hook(child_values, raw)
                try:
                    items.append(build_lab_result(child_values))
                except RecordProblem as problem:
                    raise RecordProblem(f"{child.name} row {number}: {problem.reason}") from None
            values[child.name] = items
        hook = self.profile.hooks.get(row.kind)
        if hook is not None:
            values = hook(values, row.raw)
        return build_record(row.kind, values, self._zone)


def from_profile(config: SourceConfig) -> SqlProfileAdapter:
    """The ``sql-profile`` adapter: option ``profile`` names a shipped profile or a profile file."""
    profile = config.options.get("profile")
    if not profile:
        raise ConnectionProblem("configuration", "the sql-profile adapter needs the option 'profile'")
    return SqlProfileAdapter(config, load_profile(str(profile)))


def frontdb(config: SourceConfig) -> SqlProfileAdapter:
    """The regional front-end database (前置库) published by the hub (``adapters/frontdb``)."""
    return SqlProfileAdapter(config, load_profile("frontdb"))


def his_pinyin(config: SourceConfig) -> SqlProfileAdapter:
    """A HIS/EMR whose tables and columns are pinyin abbreviations (BRXXK, HZXM, SFZH…)."""
    return SqlProfileAdapter(config, load_profile("his_pinyin"))


def lis_english(config: SourceConfig) -> SqlProfileAdapter:
    """A LIS with English table and column names (lab_report, lab_result, item_code…)."""
    return SqlProfileAdapter(config, load_profile("lis_english"))
