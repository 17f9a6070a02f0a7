"""The SQL client store: registered clients (as plain records) and used client-assertion ids.

Records are dicts with the keys of :data:`hub.store.tables.client` (``institutions``,
``consortia`` and ``scopes`` as lists, ``jwks`` as a dict); ``hub.auth`` gives them meaning.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.store.tables import client as client_table
from hub.store.tables import client_assertion


class SqlClientStore:
    """The ``ClientStore`` of ``hub.auth.clients`` on the hub database (one connection, caller's transaction)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def add(self, record: dict[str, Any]) -> None:
        """Register a new client."""
        row = {
            **record, "scopes": " ".join(record["scopes"]), "institutions": json.dumps(sorted(record["institutions"])),
            "consortia": json.dumps(sorted(record["consortia"])),
            "jwks": json.dumps(record["jwks"]) if record.get("jwks") else None,
        }
        self.connection.execute(insert(client_table).values(**row))

    def get(self, client_id: str) -> dict[str, Any] | None:
        """The client, or None."""
        row = self.connection.execute(select(client_table).where(client_table.c.client_id == client_id[:64])).first()
        return _client(row) if row is not None else None

    def all(self) -> list[dict[str, Any]]:
        """Every client, oldest first."""
        rows = self.connection.execute(select(client_table).order_by(client_table.c.created)).all()
        return [_client(row) for row in rows]

    def set_active(self, client_id: str, active: bool) -> bool:
        """Enable or disable a client; False if it does not exist."""
        result = self.connection.execute(
            update(client_table).where(client_table.c.client_id == client_id[:64]).values(active=active)
        )
        return bool(result.rowcount)

    def use_assertion(self, client_id: str, jti: str, expires: int) -> bool:
        """Record an assertion id; False if it was already used. Expired ids are purged on the way."""
        self.connection.execute(delete(client_assertion).where(client_assertion.c.expires < int(time.time()) - 60))
        try:
            with self.connection.begin_nested():
                self.connection.execute(insert(client_assertion).values(client_id=client_id, jti=jti, expires=expires))
        except IntegrityError:
            return False
        return True


def _client(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record.update(
        scopes=record["scopes"].split(), institutions=json.loads(record["institutions"]),
        consortia=json.loads(record["consortia"]), jwks=json.loads(record["jwks"]) if record["jwks"] else None,
        active=bool(record["active"]),
    )
    return record
