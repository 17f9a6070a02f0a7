"""SqlRepository: the FhirRepository on SQLAlchemy Core (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import ColumnElement

from hub.errors import VersionConflict
from hub.fhir.access import patient_data_types
from hub.fhir.instants import aware
from hub.fhir.protected import PersonalDataProtector
from hub.fhir.repository import HistorySpec, IndexValues, SearchSpec, StoredResource, VersionWrite
from hub.store.dashboard_tables import dash_change
from hub.store.index_rows import COPY_THRESHOLD, DriverIntegrityError, insert_index_rows, insert_rows
from hub.store.search_sql import SearchSql, token_hash
from hub.store.service_tables import subscription_event
from hub.store.sorted_search import index_sortable, search_few_sorted, search_index_sorted
from hub.store.subscriptions import watched_types
from hub.store.tables import (
    INDEX_TABLES,
    empi_queue,
    reference_index,
    resource,
    resource_version,
)
from hub.store.tele_tables import INTAKE_TYPES, tele_intake

#: Sorted searches with more matches than this read the sort index in order.
_SORT_IN_INDEX_ABOVE = 2000
#: Advisory-lock buckets for conditional writes, and the first lock id they use.
LOCK_BUCKETS = 1024
LOCK_BASE = 0x48554200000  # "HUB" in the high bits, away from other applications' ids


def _text(content: bytes | None) -> str | None:
    return content.decode("utf-8") if content is not None else None


def _bytes(content: str | bytes | None) -> bytes | None:
    if content is None:
        return None
    return content.encode("utf-8") if isinstance(content, str) else bytes(content)


_CURRENT_COLUMNS = (
    resource.c.res_pk,
    resource.c.res_id,
    resource.c.resource_type,
    resource.c.version_id,
    resource.c.last_updated,
    resource.c.deleted,
    resource.c.content,
)


#: Resources whose old index rows one DELETE removes.
UPDATE_CHUNK = 1000


class SqlRepository:
    """FHIR storage on one SQLAlchemy connection, inside its caller's transaction."""

    def __init__(self, connection: Connection, protector: PersonalDataProtector | None = None, *,
                 empi_queue: bool = True) -> None:
        self.connection = connection
        #: Patient writes are queued for the EMPI in the writing transaction (not the EMPI's own).
        self._empi_queue = empi_queue
        self._sql = SearchSql(probe_after_first=connection.dialect.name == "sqlite")
        #: ID and phone numbers are sealed (encrypted) on the way in and revealed on the way out.
        self._protector = protector

    def _content(self, content: str | bytes | None) -> bytes | None:
        """Stored content as served: protected values decrypted."""
        data = _bytes(content)
        return self._protector.reveal_bytes(data) if data is not None and self._protector is not None else data

    def _sealed(self, content: bytes | None) -> str | None:
        """Content as stored: protected values encrypted."""
        if content is not None and self._protector is not None:
            content = self._protector.protect_bytes(content)
        return _text(content)

    def _current(self, row: Any) -> StoredResource:
        return StoredResource(
            row.resource_type, row.res_id, row.version_id, aware(row.last_updated), False, self._content(row.content),
            pk=row.res_pk,
        )

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
            resource_type, resource_id, row.version_id, aware(row.last_updated), row.deleted, self._content(row.content)
        )

    def read_current_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredResource]:
        found: dict[tuple[str, str], StoredResource] = {}
        by_type: dict[str, list[str]] = {}
        for resource_type, resource_id in keys:
            by_type.setdefault(resource_type, []).append(resource_id)
        for resource_type, ids in by_type.items():
            for start in range(0, len(ids), 500):
                query = select(*_CURRENT_COLUMNS).where(
                    resource.c.resource_type == resource_type, resource.c.res_id.in_(ids[start:start + 500])
                )
                for row in self.connection.execute(query.add_columns(resource.c.deleted.label("is_deleted"))):
                    stored = self._current(row)
                    found[(resource_type, row.res_id)] = replace(stored, deleted=row.is_deleted,
                                                                 content=stored.content if not row.is_deleted else None)
        return found

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
            resource_type, resource_id, version_id, aware(row.last_updated), row.deleted, self._content(row.content),
            row.method,
        )

    def version_at(self, resource_type: str, resource_id: str, instant: datetime) -> StoredResource | None:
        row = self.connection.execute(
            select(resource_version.c.version_id, resource_version.c.method, resource_version.c.last_updated,
                   resource_version.c.deleted, resource_version.c.content)
            .where(resource_version.c.res_pk == self._pk_subquery(resource_type, resource_id),
                   resource_version.c.last_updated <= instant)
            .order_by(resource_version.c.version_id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        return StoredResource(resource_type, resource_id, row.version_id, aware(row.last_updated), row.deleted,
                              self._content(row.content), row.method)

    def search(self, spec: SearchSpec) -> list[StoredResource]:
        return self._search(spec, index_order=True)

    def _search(self, spec: SearchSpec, *, index_order: bool) -> list[StoredResource]:
        """One page; ``index_order`` reads a sorted search in its sort index's order (large result sets)."""
        if index_order and index_sortable(spec.sort, spec.resource_type, spec.before) and spec.after is None:
            assert spec.resource_type is not None

            def conditions(key: Any) -> list[ColumnElement[bool]]:
                found = self._search_conditions(spec, key, driven=key is not None)
                return found + ([resource.c.res_pk <= spec.bound] if spec.bound is not None else [])

            rows = search_index_sorted(self.connection, _CURRENT_COLUMNS, conditions, spec.sort[0],
                                       spec.resource_type, spec.offset, spec.count)
            return [self._current(r) for r in rows]
        keys = self._single_index_keys(spec)
        if keys is not None and not spec.sort and spec.bound is None:
            return self._search_by_keys(spec, keys)
        query = select(*_CURRENT_COLUMNS).where(*self._search_conditions(spec))
        order = self._sql.sort_columns(spec.sort, resource)
        if spec.after is not None:
            query = query.where(resource.c.res_pk > spec.after)
        if spec.before is not None:
            query = query.where(resource.c.res_pk < spec.before).order_by(*order, resource.c.res_pk.desc())
        else:
            query = query.order_by(*order, resource.c.res_pk)
        if spec.bound is not None:
            query = query.where(resource.c.res_pk <= spec.bound)
        rows = list(self.connection.execute(query.offset(spec.offset).limit(spec.count)))
        if spec.before is not None:
            rows.reverse()
        return [self._current(r) for r in rows]

    def search_counted(self, spec: SearchSpec) -> tuple[list[StoredResource], int]:
        keys = self._single_index_keys(spec)
        if keys is not None and not spec.sort and spec.bound is None:
            found, matches = self._search_by_keys(spec, keys, counted=True)
            if matches is not None:
                return found, matches
        if not index_sortable(spec.sort, spec.resource_type, spec.before):
            found = self.search(spec)
            first_page = spec.after is None and spec.before is None and spec.offset == 0
            return found, len(found) if first_page and len(found) < spec.count else self.count(spec)
        matches = self.count(spec)
        # Few matches: sorting them is cheaper than reading the sort index until a page is found.
        keys = self._single_index_keys(spec)
        if matches <= _SORT_IN_INDEX_ABOVE and keys is not None and spec.bound is not None:
            keys = keys.where(keys.selected_columns[0] <= spec.bound)
            rows = search_few_sorted(self.connection, _CURRENT_COLUMNS, keys, spec.sort[0], spec.offset, spec.count)
            return [self._current(r) for r in rows], matches
        return self._search(spec, index_order=matches > _SORT_IN_INDEX_ABOVE), matches

    def count(self, spec: SearchSpec) -> int:
        keys = self._single_index_keys(spec)
        if keys is not None:  # counted in the index alone
            return int(self.connection.execute(select(func.count()).select_from(keys.distinct().subquery()))
                       .scalar_one())
        query = select(func.count()).select_from(resource).where(*self._search_conditions(spec))
        return int(self.connection.execute(query).scalar_one())

    def type_stamp(self, resource_type: str) -> tuple[int, datetime | None]:
        # versions, not resources: every committed write adds one, so the stamp moves with each commit whatever
        # the order in which concurrent writers commit (an index range of the type)
        row = self.connection.execute(
            select(func.count(), func.max(resource_version.c.last_updated))
            .where(resource_version.c.resource_type == resource_type)
        ).one()
        return int(row[0]), row[1]

    def latest_key(self) -> int:
        return int(self.connection.execute(select(func.coalesce(func.max(resource.c.res_pk), 0))).scalar_one())

    def referenced(
        self, sources: Sequence[int], params: Sequence[tuple[str, str | None, str | None]], limit: int
    ) -> list[StoredResource]:
        if not sources or not params:
            return []
        ref = reference_index.c
        links = or_(*(
            and_(
                ref.resource_type == source_type if source_type != "*" else ref.resource_type != "",
                ref.param == param if param else ref.target_type != "",
                ref.target_type == target if target else ref.target_type != "",
            )
            for source_type, param, target in params
        ))
        targets = select(ref.target_type, ref.target_id).where(ref.res_pk.in_(sources), links).distinct().subquery()
        query = (
            select(*_CURRENT_COLUMNS)
            .join(targets, and_(resource.c.resource_type == targets.c.target_type,
                                resource.c.res_id == targets.c.target_id))
            .where(resource.c.deleted.is_(False))
            .order_by(resource.c.res_pk)
            .limit(limit)
        )
        return [self._current(r) for r in self.connection.execute(query)]

    def referring(
        self, targets: Sequence[tuple[str, str]], source_type: str, param: str | None, limit: int
    ) -> list[StoredResource]:
        if not targets:
            return []
        ref = reference_index.c
        by_type: dict[str, list[str]] = {}
        for target_type, target_id in targets:
            by_type.setdefault(target_type, []).append(target_id)
        sources = select(ref.res_pk).where(
            or_(*(and_(ref.target_type == t, ref.target_id.in_(ids)) for t, ids in by_type.items())),
            ref.resource_type == source_type if source_type != "*" else ref.resource_type != "",
            *((ref.param == param,) if param else ()),
        )
        query = (
            select(*_CURRENT_COLUMNS)
            .where(resource.c.res_pk.in_(sources), resource.c.deleted.is_(False))
            .order_by(resource.c.res_pk)
            .limit(limit)
        )
        return [self._current(r) for r in self.connection.execute(query)]

    def current_batch(self, resource_type: str | None, after: int, limit: int) -> list[StoredResource]:
        query = select(*_CURRENT_COLUMNS).where(resource.c.res_pk > after, resource.c.deleted.is_(False))
        if resource_type is not None:
            query = query.where(resource.c.resource_type == resource_type)
        return [self._current(r) for r in self.connection.execute(query.order_by(resource.c.res_pk).limit(limit))]

    def replace_index(self, items: Sequence[tuple[StoredResource, IndexValues]]) -> None:
        pks = [stored.pk for stored, _values in items]
        for table in INDEX_TABLES.values():
            self.connection.execute(delete(table).where(table.c.res_pk.in_(pks)))
        self._insert_rows([(stored.resource_type, stored.pk, values) for stored, values in items])

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
                r.resource_type, r.res_id, r.version_id, aware(r.last_updated), r.deleted, self._content(r.content), r.method
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
            updates = [w for w in writes if w.previous_version != 0]
            if updates:
                self._update_existing(updates)
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

    def hidden(self, resource_type: str, resource_id: str) -> bool:
        """Nothing is hidden from an unscoped repository."""
        return False

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if self.connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            yield  # a read-only unit (nothing to roll back, and PostgreSQL refuses SAVEPOINT there)
            return
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
        contents = [self._sealed(w.new.content) for w in writes]
        rows = [
            {
                "resource_type": w.new.resource_type,
                "res_id": w.new.id,
                "version_id": w.new.version_id,
                "last_updated": w.new.last_updated,
                "deleted": w.new.deleted,
                "content": content,
            }
            for w, content in zip(writes, contents, strict=True)
        ]
        if self.connection.dialect.name == "postgresql" and len(rows) > COPY_THRESHOLD:
            # keys from the sequence, then COPY: a multi-row INSERT of thousands of parameters
            # costs more to build and parse than the rows cost to store
            pks = list(self.connection.execute(
                text("SELECT nextval(pg_get_serial_sequence('hub_resource', 'res_pk')) FROM generate_series(1, :n)"),
                {"n": len(rows)},
            ).scalars())
            try:
                insert_rows(self.connection, resource, [{"res_pk": pk, **row} for pk, row in zip(pks, rows, strict=True)])
            except DriverIntegrityError:
                raise VersionConflict("A resource in this request was created concurrently") from None
        else:
            result = self.connection.execute(
                insert(resource).returning(resource.c.res_pk, sort_by_parameter_order=True), rows
            )
            pks = [row.res_pk for row in result]
        self._insert_versions(writes, pks, contents)
        self._insert_index(writes, pks)
        self._queue_changes(writes)

    def _update_existing(self, writes: Sequence[VersionWrite]) -> None:
        """New versions of existing resources: each current row moves only from the version its writer read
        (else VersionConflict); the old index rows go and the versions and new index rows are written in
        batches, as for creates."""
        pks: list[int] = []
        contents: list[str | None] = []
        for write in writes:
            new = write.new
            content = self._sealed(new.content)
            row = self.connection.execute(
                update(resource)
                .where(
                    resource.c.resource_type == new.resource_type,
                    resource.c.res_id == new.id,
                    resource.c.version_id == write.previous_version,
                )
                .values(version_id=new.version_id, last_updated=new.last_updated, deleted=new.deleted,
                        content=content)
                .returning(resource.c.res_pk)
            ).first()
            if row is None:
                raise VersionConflict(f"{new.resource_type}/{new.id} is no longer at version {write.previous_version}")
            pks.append(row.res_pk)
            contents.append(content)
        for start in range(0, len(pks), UPDATE_CHUNK):
            chunk = pks[start:start + UPDATE_CHUNK]
            for table in INDEX_TABLES.values():
                self.connection.execute(delete(table).where(table.c.res_pk.in_(chunk)))
        self._insert_versions(writes, pks, contents)
        live = [(w, pk) for w, pk in zip(writes, pks, strict=True) if not w.new.deleted]
        if live:
            self._insert_index([w for w, _pk in live], [pk for _w, pk in live])
        self._queue_changes(writes)

    def _queue_changes(self, writes: Sequence[VersionWrite]) -> None:
        """Queue the writes that others act on after commit, in the writing transaction: they see every
        write that commits, and none that does not. Patients for the EMPI; exams for tele-diagnosis's
        intake; patient data (deletions too) for the dashboards' facts; resources of the types Subscriptions watch for their matcher (deletions notify nobody)."""
        if self._empi_queue:
            insert_rows(self.connection, empi_queue, [{"patient_id": w.new.id, "enqueued": w.new.last_updated}
                                                      for w in writes if w.new.resource_type == "Patient"])
        insert_rows(self.connection, tele_intake, [
            {"resource_type": w.new.resource_type, "res_id": w.new.id, "enqueued": w.new.last_updated}
            for w in writes if w.new.resource_type in INTAKE_TYPES and not w.new.deleted])
        facts = patient_data_types()
        insert_rows(self.connection, dash_change, [
            {"resource_type": w.new.resource_type, "res_id": w.new.id} for w in writes if w.new.resource_type in facts])
        watched = watched_types(self.connection)
        if watched:
            insert_rows(self.connection, subscription_event, [
                {"resource_type": w.new.resource_type, "res_id": w.new.id, "version_id": w.new.version_id,
                 "enqueued": w.new.last_updated}
                for w in writes if w.new.resource_type in watched and not w.new.deleted])

    def _insert_versions(self, writes: Sequence[VersionWrite], pks: Sequence[int], contents: Sequence[str | None]) -> None:
        insert_rows(
            self.connection,
            resource_version,
            [
                {
                    "res_pk": pk,
                    "version_id": w.new.version_id,
                    "resource_type": w.new.resource_type,
                    "res_id": w.new.id,
                    "method": w.new.method,
                    "last_updated": w.new.last_updated,
                    "deleted": w.new.deleted,
                    "content": content,
                }
                for w, pk, content in zip(writes, pks, contents, strict=True)
            ],
        )

    def _insert_index(self, writes: Sequence[VersionWrite], pks: Sequence[int]) -> None:
        self._insert_rows([(w.new.resource_type, pk, w.index) for w, pk in zip(writes, pks, strict=True)])

    def _insert_rows(self, items: Sequence[tuple[str, int, IndexValues]]) -> None:
        insert_index_rows(self.connection, items)

    def _search_conditions(self, spec: SearchSpec, key: Any = None, driven: bool = False) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [resource.c.deleted.is_(False)]
        if spec.resource_type is not None:
            conditions.append(resource.c.resource_type == spec.resource_type)
        elif spec.types:
            conditions.append(resource.c.resource_type.in_(spec.types))
        conditions.extend(self._sql.conditions(spec.criteria, resource, spec.resource_type, key, driven=driven))
        return conditions

    def _single_index_keys(self, spec: SearchSpec) -> Any | None:
        """The index query of a search with exactly one index criterion (the common case), else None."""
        if spec.resource_type is None or len(spec.criteria) != 1:
            return None
        return self._sql.key_query(spec.criteria[0], spec.resource_type)

    def _search_by_keys(self, spec: SearchSpec, keys: Any, *, counted: bool = False) -> Any:
        """One page of a one-criterion search: the page's keys come from the index alone, in key order.

        ``counted`` also returns how many resources match in all, from the same index pass.
        """
        matched = keys.distinct().subquery()
        key = matched.c.res_pk
        columns = [key, func.count().over().label("matches")] if counted else [key]
        page = select(*columns).select_from(matched)
        if counted:
            page = select(page.subquery())
            key = page.selected_columns.res_pk
        if spec.after is not None:
            page = page.where(key > spec.after)
        if spec.before is not None:
            page = page.where(key < spec.before).order_by(key.desc())
        else:
            page = page.order_by(key)
        chosen = page.offset(spec.offset).limit(spec.count).subquery()
        query = (
            select(*_CURRENT_COLUMNS, *([chosen.c.matches] if counted else []))
            .join(chosen, chosen.c.res_pk == resource.c.res_pk)
            .order_by(resource.c.res_pk)
        )
        rows = list(self.connection.execute(query))
        found = [self._current(r) for r in rows]
        if not counted:
            return found
        return found, (int(rows[0].matches) if rows else None)

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
