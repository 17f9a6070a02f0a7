"""Registered source systems in SQL; connections (which carry passwords) encrypted at rest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from hub.privacy import DataKeyring
from hub.store.tables import source_system

#: AES-GCM context of source connections (a sealed connection cannot be decrypted as anything else).
CONNECTION_CONTEXT = "source-credentials"


@dataclass(frozen=True)
class SourceRecord:
    """A registered source system. ``connection`` is plaintext in memory only: never return or log it."""

    source_id: str
    institution: str
    name: str
    system_kind: str
    adapter: str
    adapter_version: str
    connection: str = field(repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    schedule: str | None = None
    enabled: bool = True
    created: datetime | None = None
    updated: datetime | None = None


class SqlSourceStore:
    """Source systems on one connection, inside its caller's transaction."""

    def __init__(self, connection: Connection, keyring: DataKeyring) -> None:
        self.connection = connection
        self._keyring = keyring

    def _row(self, source: SourceRecord) -> dict[str, Any]:
        return {
            "source_id": source.source_id, "institution": source.institution, "name": source.name,
            "system_kind": source.system_kind, "adapter": source.adapter, "adapter_version": source.adapter_version,
            "connection": self._keyring.encrypt(source.connection, CONNECTION_CONTEXT),
            "options": json.dumps(dict(source.options), ensure_ascii=False), "schedule": source.schedule,
            "enabled": source.enabled, "created": source.created, "updated": source.updated,
        }

    def _record(self, row: Any) -> SourceRecord:
        return SourceRecord(
            row.source_id, row.institution, row.name, row.system_kind, row.adapter, row.adapter_version,
            self._keyring.decrypt(row.connection, CONNECTION_CONTEXT), json.loads(row.options), row.schedule,
            bool(row.enabled), row.created, row.updated,
        )

    def add(self, source: SourceRecord) -> None:
        """Register a new source (the caller checked the id is free)."""
        self.connection.execute(insert(source_system).values(**self._row(source)))

    def save(self, source: SourceRecord) -> None:
        """Replace a registered source's settings."""
        row = self._row(source)
        del row["created"]
        self.connection.execute(update(source_system).where(source_system.c.source_id == source.source_id).values(**row))

    def get(self, source_id: str) -> SourceRecord | None:
        """The source, or None."""
        row = self.connection.execute(
            select(source_system).where(source_system.c.source_id == source_id[:64])
        ).first()
        return self._record(row) if row is not None else None

    def all(self, institutions: frozenset[str] | None = None) -> list[SourceRecord]:
        """Every source (of ``institutions`` when given), by id."""
        query = select(source_system).order_by(source_system.c.source_id)
        if institutions is not None:
            query = query.where(source_system.c.institution.in_(sorted(institutions)))
        return [self._record(row) for row in self.connection.execute(query)]

    def remove(self, source_id: str) -> bool:
        """Unregister a source (its data and runs stay); False if unknown."""
        result = self.connection.execute(delete(source_system).where(source_system.c.source_id == source_id[:64]))
        return bool(result.rowcount)
