"""Matching committed writes against the watched Subscriptions' criteria.

The store queues an event for every committed write of a watched type. The matcher takes
a batch of events and, per Subscription watching their type, runs the Subscription's
criteria once against the batch's ids (``criteria&_id=a,b,c…`` in SQL): exactly the
search semantics of the REST API, chains and the EMPI's linked Patients included. The
search runs with the owning client's access, so a notification never carries what that
client may not read. Criteria apply to the new value of a resource (R4): a version that a
later write has already replaced is left to that later write's event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from hub.errors import HubError
from hub.fhir import jsonio
from hub.fhir.access import Access
from hub.fhir.criteria import IdCriterion, TokenCriterion
from hub.fhir.instants import now_utc, parse_instant
from hub.fhir.repository import SearchSpec
from hub.fhir.subscriptions import WATCHED_STATUSES, criteria_of, subscriber_of
from hub.store.database import Database
from hub.store.repository import SqlRepository
from hub.store.scoped import ScopedRepository
from hub.store.subscriptions import Event, SubscriptionStore
from hub.subscriptions.owners import client_access

log = logging.getLogger("hub.subscriptions")
#: Subscriptions read at most (a hub serves tens, not thousands).
MAX_SUBSCRIPTIONS = 1000


@dataclass(frozen=True)
class Watched:
    """An active Subscription, ready to match."""

    id: str
    resource_type: str
    spec: SearchSpec
    owner: Access


@dataclass
class MatchStats:
    """What one matcher run did."""

    events: int = 0
    deliveries: int = 0


def set_status(database: Database, subscription_id: str, status: str, error: str | None = None) -> None:
    """Write a new version of a Subscription with the hub's ``status`` (and ``error`` text)."""
    with database.fhir_service(write=True) as service:
        current = service.repository.read_current("Subscription", subscription_id)
        if current is None or current.deleted or current.content is None:
            return
        document = jsonio.loads_stored(current.content)
        document["status"] = status
        if error is None:
            document.pop("error", None)
        else:
            document["error"] = error
        service.update("Subscription", subscription_id, document)


class SubscriptionMatcher:
    """Turns write events into pending deliveries."""

    def __init__(self, database: Database, clock: Any = now_utc) -> None:
        self.database = database
        self.clock = clock

    def watched(self) -> list[Watched]:
        """The requested and active Subscriptions, requested ones activated (or put in error when their
        criteria no longer parse, or off when their ``end`` has passed)."""
        now: datetime = self.clock()
        found: list[Watched] = []
        changes: list[tuple[str, str, str | None]] = []
        with self.database.fhir_service(write=False) as service:
            statuses = TokenCriterion("status", tuple((None, s) for s in WATCHED_STATUSES))
            stored = service.repository.search(SearchSpec("Subscription", (statuses,), count=MAX_SUBSCRIPTIONS))
            for item in stored:
                document = jsonio.loads_stored(item.content or b"{}")
                end = document.get("end")
                if isinstance(end, str) and _passed(end, now):
                    changes.append((item.id, "off", None))
                    continue
                owner = client_access(self.database, subscriber_of(document))
                if owner is None:
                    changes.append((item.id, "error", "The subscribing client is no longer registered or is disabled"))
                    continue
                try:
                    resource_type, query = criteria_of(document)
                    spec = service.filter_spec(resource_type, query, purpose="Subscription.criteria")
                except HubError as exc:
                    changes.append((item.id, "error", f"The criteria cannot be searched: {exc.message}"))
                    continue
                if document.get("status") == "requested":
                    changes.append((item.id, "active", None))
                found.append(Watched(item.id, resource_type, spec, owner))
        for subscription_id, status, error in changes:
            set_status(self.database, subscription_id, status, error)
            if status != "active":
                log.warning("Subscription/%s is now %s%s", subscription_id, status, f": {error}" if error else "")
        return found

    def run_once(self, limit: int = 500) -> MatchStats:
        """Match one batch of events (in one transaction: the events go as their deliveries are written)."""
        stats = MatchStats()
        with self.database.connection(write=False) as connection:
            if not SubscriptionStore(connection).pending_events():
                return stats
        watching = self.watched()  # before the write transaction: activating one writes too
        with self.database.connection(write=True) as connection:
            store = SubscriptionStore(connection)
            events = store.claim_events(limit)
            base = SqlRepository(connection, self.database.protector, empi_queue=False)
            rows: list[tuple[str, str, str, int]] = []
            for resource_type, latest in _latest_by_type(events).items():
                for watched in (w for w in watching if w.resource_type == resource_type):
                    rows.extend(self._matches(base, watched, latest))
            store.add_deliveries(rows, self.clock())
            store.remove_events([e.pk for e in events])
            stats.events, stats.deliveries = len(events), len(rows)
        return stats

    @staticmethod
    def _matches(base: SqlRepository, watched: Watched, latest: dict[str, int]) -> list[tuple[str, str, str, int]]:
        """Deliveries of ``watched`` for the resources (id → newest event version) that match now."""
        if not watched.owner.allows(watched.resource_type, "r"):
            return []
        repository = ScopedRepository(base, watched.owner) if watched.owner.institutions is not None else base
        ids = sorted(latest)
        spec = replace(watched.spec, criteria=(*watched.spec.criteria, IdCriterion(tuple(ids))), count=len(ids),
                       offset=0, sort=(), after=None, before=None, bound=None)
        return [(watched.id, found.resource_type, found.id, found.version_id) for found in repository.search(spec)
                if found.version_id == latest[found.id]]


def _latest_by_type(events: list[Event]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for event in events:
        versions = out.setdefault(event.resource_type, {})
        versions[event.resource_id] = max(versions.get(event.resource_id, 0), event.version_id)
    return out


def _passed(instant: str, now: datetime) -> bool:
    try:
        return parse_instant("Subscription.end", instant) <= now
    except HubError:
        return False
