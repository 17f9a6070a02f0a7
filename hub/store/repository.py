"""SqlRepository: the FhirRepository on SQLAlchemy Core (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from hub.errors import VersionConflict
from hub.fhir.repository import (
    HistorySpec,
    IdCriterion,
    IndexValues,
    SearchSpec,
    StoredResource,
    TokenCriterion,
    VersionWrite,
)
from hub.store.tables import resource, resource_version, token_index

#: Advisory-lock buckets for conditional writes, and the first lock id they use.
LOCK_BUCKETS = 1024
LOCK_BASE = 0x48554200000  # "HUB" in the high bits, away from other applications' ids


def token_hash(*parts: str) -> int:
    """A signed 64-bit hash of ``parts`` (stable across processes and databases)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _text(content: bytes | None) -> str | None:
    return content.decode("utf-8") if content is not None else None


def _bytes(content: str | bytes | None) -> bytes | None:
    if content is None:
        return None
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


_CURRENT_COLUMNS = (
    resource.c.res_id,
    resource.c.resource_type,
    resource.c.version_id,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
)


class SqlRepository:
    """FHIR storage on one SQLAlchemy connection, inside its caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- reads ---------------------------------------------------------------

    def read_current(self, resource_type: str, resource_id: str) -> StoredResource | None:
        row = self.connection.execute(
            select(resource.c.version_id, resource.c.last_updated, resource.c.deleted, resource.c.content).where(
                resource.c.resource_type == resource_type, resource.c.res_id == resource_id
            )
        ).first()
        if row is None:
            return None
        # ``method`` is history-only information; current reads leave the default.
        return StoredResource(
            resource_type, resource_id, row.version_id, _aware(row.last_updated), row.deleted, _bytes(row.content)
        )

    def read_version(self, resource_type: str, resource_id: str, version_id: int) -> StoredResource | None:
        row = self.connection.execute(
            select(
                resource_version.c.method,
                resource_version.c.last_updated,
                resource_version.c.deleted,
                resource_version.c.content,
            ).where(
                resource_version.c.res_pk == self._pk_subquery(resource_type, resource_id),
                resource_version.c.version_id == version_id,
            )
        ).first()
        if row is None:
            return None
        return StoredResource(
            resource_type, resource_id, version_id, _aware(row.last_updated), row.deleted, _bytes(row.content),
            row.method,
        )

    def search(self, spec: SearchSpec) -> list[StoredResource]:
        query = (
            select(*_CURRENT_COLUMNS)
            .where(*self._search_conditions(spec))
            .order_by(resource.c.res_pk)
            .offset(spec.offset)
            .limit(spec.count)
        )
        return [
            StoredResource(r.resource_type, r.res_id, r.version_id, _aware(r.last_updated), False, _bytes(r.content))
            for r in self.connection.execute(query)
        ]

    def count(self, spec: SearchSpec) -> int:
        query = select(func.count()).select_from(resource).where(*self._search_conditions(spec))
        return int(self.connection.execute(query).scalar_one())

    def history(self, spec: HistorySpec) -> list[StoredResource]:
        query = (
            select(
                resource_version.c.resource_type,
                resource_version.c.res_id,
                resource_version.c.version_id,
                resource_version.c.method,
                resource_version.c.last_updated,
                resource_version.c.deleted,
                resource_version.c.content,
            )
            .where(*self._history_conditions(spec))
            .order_by(
                resource_version.c.last_updated.desc(),
                resource_version.c.res_pk.desc(),
                resource_version.c.version_id.desc(),
            )
            .offset(spec.offset)
            .limit(spec.count)
        )
        return [
            StoredResource(
                r.resource_type, r.res_id, r.version_id, _aware(r.last_updated), r.deleted, _bytes(r.content), r.method
            )
            for r in self.connection.execute(query)
        ]

    def count_history(self, spec: HistorySpec) -> int:
        query = select(func.count()).select_from(resource_version).where(*self._history_conditions(spec))
        return int(self.connection.execute(query).scalar_one())

    # -- writes ----------------------------------------------------------------

    def write(self, write: VersionWrite) -> None:
        if write.previous_version == 0 and write.may_conflict:
            try:
                with self.connection.begin_nested():
                    self._insert_new([write])
            except IntegrityError:
                raise VersionConflict(f"{write.new.resource_type}/{write.new.id} already exists") from None
            return
        self.write_many([write])

    def write_many(self, writes: Sequence[VersionWrite]) -> None:
        try:
            creates = [w for w in writes if w.previous_version == 0]
            if creates:
                self._insert_new(creates)
            for w in writes:
                if w.previous_version != 0:
                    self._update_existing(w)
        except IntegrityError:
            raise VersionConflict("A resource in this request was changed concurrently") from None

    def lock(self, keys: Sequence[str]) -> None:
        """Transaction-scoped advisory locks on PostgreSQL-family databases.

        Keys hash into :data:`LOCK_BUCKETS` buckets, taken in ascending order in one
        statement: any number of keys costs at most that many locks (the server's lock
        table is shared and finite), and two units of work never deadlock on them.
        SQLite needs none: its writers already run one at a time (BEGIN IMMEDIATE).
        """
        if self.connection.dialect.name != "postgresql" or not keys:
            return
        buckets = sorted({LOCK_BASE + token_hash("lock", key) % LOCK_BUCKETS for key in keys})
        self.connection.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(b)) FROM "
                "(SELECT b FROM unnest(CAST(:buckets AS bigint[])) AS b ORDER BY b) AS ordered"
            ),
            {"buckets": buckets},
        )

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with self.connection.begin_nested():
            yield

    # -- internals -------------------------------------------------------------

    def _pk_subquery(self, resource_type: str, resource_id: str) -> Any:
        return (
            select(resource.c.res_pk)
            .where(resource.c.resource_type == resource_type, resource.c.res_id == resource_id)
            .scalar_subquery()
        )

    def _insert_new(self, writes: Sequence[VersionWrite]) -> None:
        rows = [
            {
                "resource_type": w.new.resource_type,
                "res_id": w.new.id,
                "version_id": w.new.version_id,
                "last_updated": w.new.last_updated,
                "deleted": w.new.deleted,
                "content": _text(w.new.content),
            }
            for w in writes
        ]
        result = self.connection.execute(
            insert(resource).returning(resource.c.res_pk, sort_by_parameter_order=True), rows
        )
        pks = [row.res_pk for row in result]
        self._insert_versions(writes, pks)
        self._insert_index(writes, pks)

    def _update_existing(self, write: VersionWrite) -> None:
        new = write.new
        result = self.connection.execute(
            update(resource)
            .where(
                resource.c.resource_type == new.resource_type,
                resource.c.res_id == new.id,
                resource.c.version_id == write.previous_version,
            )
            .values(version_id=new.version_id, last_updated=new.last_updated, deleted=new.deleted,
                    content=_text(new.content))
            .returning(resource.c.res_pk)
        )
        row = result.first()
        if row is None:
            raise VersionConflict(f"{new.resource_type}/{new.id} is no longer at version {write.previous_version}")
        self.connection.execute(delete(token_index).where(token_index.c.res_pk == row.res_pk))
        self._insert_versions([write], [row.res_pk])
        if not new.deleted:
            self._insert_index([write], [row.res_pk])

    def _insert_versions(self, writes: Sequence[VersionWrite], pks: Sequence[int]) -> None:
        self.connection.execute(
            insert(resource_version),
            [
                {
                    "res_pk": pk,
                    "version_id": w.new.version_id,
                    "resource_type": w.new.resource_type,
                    "res_id": w.new.id,
                    "method": w.new.method,
                    "last_updated": w.new.last_updated,
                    "deleted": w.new.deleted,
                    "content": _text(w.new.content),
                }
                for w, pk in zip(writes, pks, strict=True)
            ],
        )

    def _insert_index(self, writes: Sequence[VersionWrite], pks: Sequence[int]) -> None:
        rows = [
            row
            for w, pk in zip(writes, pks, strict=True)
            for row in _token_rows(w.new.resource_type, pk, w.index)
        ]
        if rows:
            self.connection.execute(insert(token_index), rows)

    def _search_conditions(self, spec: SearchSpec) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [
            resource.c.resource_type == spec.resource_type,
            resource.c.deleted.is_(False),
        ]
        for criterion in spec.criteria:
            if isinstance(criterion, IdCriterion):
                conditions.append(resource.c.res_id.in_(criterion.ids))
            elif isinstance(criterion, TokenCriterion):
                conditions.append(self._token_condition(spec.resource_type, criterion))
        return conditions

    def _token_condition(self, resource_type: str, criterion: TokenCriterion) -> ColumnElement[bool]:
        alternatives = []
        for system, code in criterion.values:
            if system is None:
                alternatives.append(token_index.c.hash_value == token_hash(resource_type, criterion.param, code or ""))
            elif code is None:
                alternatives.append(token_index.c.hash_sys == token_hash(resource_type, criterion.param, system))
            else:
                alternatives.append(
                    token_index.c.hash_sys_value == token_hash(resource_type, criterion.param, system, code)
                )
        # IN (uncorrelated subquery): both planners start from the hash index (a correlated
        # EXISTS made SQLite scan every resource of the type).
        return resource.c.res_pk.in_(select(token_index.c.res_pk).where(or_(*alternatives)))

    def _history_conditions(self, spec: HistorySpec) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if spec.resource_type is not None and spec.resource_id is not None:
            conditions.append(
                resource_version.c.res_pk == self._pk_subquery(spec.resource_type, spec.resource_id)
            )
        elif spec.resource_type is not None:
            conditions.append(resource_version.c.resource_type == spec.resource_type)
        if spec.since is not None:
            conditions.append(resource_version.c.last_updated >= spec.since)
        return conditions


def _token_rows(resource_type: str, pk: int, index: IndexValues) -> list[dict[str, Any]]:
    return [
        {
            "res_pk": pk,
            "resource_type": resource_type,
            "param": token.param,
            "system": token.system,
            "value": token.value,
            "hash_sys_value": token_hash(resource_type, token.param, token.system, token.value),
            "hash_value": token_hash(resource_type, token.param, token.value),
            "hash_sys": token_hash(resource_type, token.param, token.system),
        }
        for token in index.tokens
    ]
