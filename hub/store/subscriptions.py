"""Storage of the Subscription machinery: the write events it watches and its delivery log.

The events are written by :class:`~hub.store.repository.SqlRepository` in the writing
transaction, and only for resource types some watched Subscription names: a write that
rolls back leaves no event, a committed one always does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, select, update

from hub.fhir.instants import aware
from hub.fhir.subscriptions import watched_type
from hub.store.service_tables import subscription_delivery, subscription_event
from hub.store.tables import resource, resource_version

_cache_lock = threading.Lock()
#: Per database URL: the number of Subscription versions and the types the Subscriptions watch.
_watched: dict[str, tuple[int, frozenset[str]]] = {}


def watched_types(connection: Connection) -> frozenset[str]:
    """The resource types watched by Subscriptions that are requested or active.

    One count over the Subscriptions' versions (an index) per call; their contents are read
    again only when one of them changed (any process's write adds a version).
    """
    # Every write of a Subscription adds a version: their number changes with any change, in any process.
    stamp = int(connection.execute(select(func.count()).select_from(resource_version)
                                   .where(resource_version.c.resource_type == "Subscription")).scalar_one())
    key = str(connection.engine.url)
    with _cache_lock:
        cached = _watched.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    types: set[str] = set()
    if stamp:
        rows = connection.execute(
            select(resource.c.content).where(resource.c.resource_type == "Subscription", resource.c.deleted.is_(False))
        )
        for (content,) in rows:
            watched = watched_type(content.encode("utf-8") if isinstance(content, str) else content)
            if watched:
                types.add(watched)
    found = frozenset(types)
    with _cache_lock:
        _watched[key] = (stamp, found)
    return found


@dataclass(frozen=True, slots=True)
class Event:
    """A committed write of a watched type."""

    pk: int
    resource_type: str
    resource_id: str
    version_id: int


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification: a Subscription and the resource version it is about, with its attempts."""

    pk: int
    subscription_id: str
    resource_type: str
    resource_id: str
    version_id: int
    status: str
    attempts: int
    next_attempt: datetime
    created: datetime
    last_attempt: datetime | None
    http_status: int | None
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The delivery-log entry as JSON."""
        return {
            "id": self.pk, "subscription": f"Subscription/{self.subscription_id}",
            "resource": f"{self.resource_type}/{self.resource_id}/_history/{self.version_id}",
            "status": self.status, "attempts": self.attempts, "created": self.created.isoformat(),
            "lastAttempt": self.last_attempt.isoformat() if self.last_attempt else None,
            "nextAttempt": self.next_attempt.isoformat() if self.status == "pending" else None,
            "httpStatus": self.http_status, "error": self.error,
        }


class SubscriptionStore:
    """The events and deliveries, inside the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def claim_events(self, limit: int) -> list[Event]:
        """The oldest events (locked against other workers on PostgreSQL until the transaction ends)."""
        query = select(subscription_event).order_by(subscription_event.c.event_pk).limit(limit)
        if self.connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [Event(r.event_pk, r.resource_type, r.res_id, r.version_id) for r in self.connection.execute(query)]

    def remove_events(self, pks: Sequence[int]) -> None:
        """Forget events that were matched."""
        for start in range(0, len(pks), 500):
            self.connection.execute(delete(subscription_event).where(
                subscription_event.c.event_pk.in_(pks[start:start + 500])))

    def pending_events(self) -> int:
        """How many events wait for the matcher."""
        return int(self.connection.execute(select(func.count()).select_from(subscription_event)).scalar_one())

    def add_deliveries(self, rows: Sequence[tuple[str, str, str, int]], now: datetime) -> None:
        """New pending deliveries ``(subscription id, type, id, version)``, due now."""
        if rows:
            self.connection.execute(subscription_delivery.insert(), [
                {"subscription_id": s, "resource_type": t, "res_id": i, "version_id": v, "status": "pending",
                 "attempts": 0, "next_attempt": now, "created": now} for s, t, i, v in rows])

    def due(self, now: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, the longest due first."""
        query = (select(subscription_delivery)
                 .where(subscription_delivery.c.status == "pending", subscription_delivery.c.next_attempt <= now)
                 .order_by(subscription_delivery.c.next_attempt, subscription_delivery.c.delivery_pk).limit(limit))
        if self.connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [_delivery(r) for r in self.connection.execute(query)]

    def lease(self, pks: Sequence[int], until: datetime) -> None:
        """Keep these deliveries from other senders until ``until`` (while this one tries them)."""
        for start in range(0, len(pks), 500):
            self.connection.execute(update(subscription_delivery).where(
                subscription_delivery.c.delivery_pk.in_(pks[start:start + 500])).values(next_attempt=until))

    def record(self, delivery_pk: int, *, status: str, attempts: int, at: datetime | None, next_attempt: datetime,
               http_status: int | None, error: str | None) -> None:
        """The outcome of one attempt."""
        self.connection.execute(update(subscription_delivery).where(
            subscription_delivery.c.delivery_pk == delivery_pk).values(
            status=status, attempts=attempts, last_attempt=at, next_attempt=next_attempt, http_status=http_status,
            error=error))

    def drop_pending(self, subscription_id: str, reason: str) -> None:
        """Stop the pending deliveries of a Subscription that is off, in error or gone."""
        self.connection.execute(update(subscription_delivery).where(
            subscription_delivery.c.subscription_id == subscription_id,
            subscription_delivery.c.status == "pending").values(status="dropped", error=reason))

    def purge(self, before: datetime) -> int:
        """Forget finished deliveries (delivered, failed, dropped) whose last change is older than ``before``."""
        done = subscription_delivery.c.status != "pending"
        changed = func.coalesce(subscription_delivery.c.last_attempt, subscription_delivery.c.created)
        return int(self.connection.execute(delete(subscription_delivery).where(done, changed < before)).rowcount)

    def log(self, subscription_id: str, *, limit: int, offset: int = 0,
            status: str | None = None) -> tuple[list[Delivery], int]:
        """A Subscription's deliveries (of one ``status``, or all), newest first, and how many there are."""
        where = subscription_delivery.c.subscription_id == subscription_id
        if status is not None:
            where = and_(where, subscription_delivery.c.status == status)
        rows = self.connection.execute(select(subscription_delivery).where(where).order_by(
            subscription_delivery.c.delivery_pk.desc()).limit(limit).offset(offset))
        total = self.connection.execute(select(func.count()).select_from(subscription_delivery).where(where))
        return [_delivery(r) for r in rows], int(total.scalar_one())


def _delivery(row: Any) -> Delivery:
    return Delivery(row.delivery_pk, row.subscription_id, row.resource_type, row.res_id, row.version_id, row.status,
                    row.attempts, aware(row.next_attempt), aware(row.created),
                    aware(row.last_attempt) if row.last_attempt else None, row.http_status, row.error)


