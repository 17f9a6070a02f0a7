"""Matching committed writes against the watched Subscriptions' criteria.

The store queues an event for every committed write of a watched type. The matcher takes
a batch of events and, per Subscription watching their type, runs the Subscription's
criteria once against the batch's ids (``criteria&_id=a,b,c…`` in SQL): exactly the
search semantics of the REST API, chains and the EMPI's linked Patients included. The
search runs with the owning client's access, so a notification never carries what that
client may not read. Criteria apply to the current value of a resource (R4): when a
resource changed again before its first change was matched, only its newest version is
tested (one notification about where it stands now, not one per version).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from hub.errors import HubError, PreconditionFailed
from hub.fhir import jsonio
from hub.fhir.access import Access, owner_in
from hub.fhir.criteria import IdCriterion, TokenCriterion
from hub.fhir.instants import now_utc, parse_instant
from hub.fhir.repository import SearchSpec
from hub.fhir.subscriptions import WATCHED_STATUSES, channel_of, criteria_of, endpoint_allowed
from hub.store.database import Database
from hub.store.repository import SqlRepository
from hub.store.scoped import ScopedRepository
from hub.store.subscriptions import Event, SubscriptionStore
from hub.subscriptions.owners import client_access

log = logging.getLogger("hub.subscriptions")
#: Subscriptions read at most (a hub serves tens, not thousands).
MAX_SUBSCRIPTIONS = 1000
#: Without writes to match, requested Subscriptions are activated (and expired ones put off) this often.
REVIEW_SECONDS = 10.0


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


def set_status(database: Database, subscription_id: str, status: str, error: str | None = None,
               version: int | None = None) -> bool:
    """Write a new version of a Subscription with the hub's ``status`` (and ``error`` text); with
    ``version``, only if the Subscription is still at that version (a client's change wins). False
    when nothing was written."""
    with database.fhir_service(write=True) as service:
        current = service.repository.read_current("Subscription", subscription_id)
        if current is None or current.deleted or current.content is None:
            return False
        document = jsonio.loads_stored(current.content)
        document["status"] = status
        if error is None:
            document.pop("error", None)
        else:
            document["error"] = error
        try:
            service.update("Subscription", subscription_id, document,
                           if_match=f'W/"{version}"' if version is not None else None)
        except PreconditionFailed:
            return False
    return True


class SubscriptionMatcher:
    """Turns write events into pending deliveries."""

    def __init__(self, database: Database, clock: Any = now_utc, endpoints: Sequence[str] = ()) -> None:
        self.database = database
        self.clock = clock
        #: URL prefixes endpoints must start with (``HUB_SUBSCRIPTION_ENDPOINTS``; empty: any).
        self.endpoints = tuple(endpoints)
        self._reviewed = float("-inf")

    def watched(self) -> list[Watched]:
        """The requested and active Subscriptions, requested ones activated (or put in error when their
        criteria, channel or owner no longer serve, or off when their ``end`` has passed)."""
        now: datetime = self.clock()
        found: list[Watched] = []
        changes: list[tuple[str, int, str, str | None]] = []
        with self.database.fhir_service(write=False) as service:
            statuses = TokenCriterion("status", tuple((None, s) for s in WATCHED_STATUSES))
            stored = service.repository.search(SearchSpec("Subscription", (statuses,), count=MAX_SUBSCRIPTIONS))
            for item in stored:
                document = jsonio.loads_stored(item.content or b"{}")
                end = document.get("end")
                if isinstance(end, str) and _passed(end, now):
                    changes.append((item.id, item.version_id, "off", None))
                    continue
                problem, watched = self._check(service, item.id, document)
                if problem is not None:
                    changes.append((item.id, item.version_id, "error", problem))
                    continue
                assert watched is not None
                if document.get("status") == "requested":
                    changes.append((item.id, item.version_id, "active", None))
                found.append(watched)
        for subscription_id, version, status, error in changes:
            if set_status(self.database, subscription_id, status, error, version) and status != "active":
                log.warning("Subscription/%s is now %s%s", subscription_id, status, f": {error}" if error else "")
        return found

    def _check(self, service: Any, subscription_id: str, document: dict[str, Any]) -> tuple[str | None, Any]:
        """Why a watched Subscription cannot be served (None), or what to match it with."""
        owner = client_access(self.database, owner_in(document))
        if owner is None:
            return "The subscribing client is no longer registered or is disabled", None
        try:
            channel = channel_of(document)
            resource_type, query = criteria_of(document)
            spec = service.filter_spec(resource_type, query, purpose="Subscription.criteria")
        except HubError as exc:
            return f"The Subscription cannot be served: {exc.message}", None
        if not endpoint_allowed(channel.endpoint, self.endpoints):
            return "The endpoint is not among those the hub may notify (HUB_SUBSCRIPTION_ENDPOINTS)", None
        return None, Watched(subscription_id, resource_type, spec, owner)

    def run_once(self, limit: int = 500) -> MatchStats:
        """Match one batch of events (in one transaction: the events go as their deliveries are written)."""
        stats = MatchStats()
        with self.database.connection(write=False) as connection:
            pending = SubscriptionStore(connection).pending_events()
        if not pending:
            if self.clock().timestamp() - self._reviewed >= REVIEW_SECONDS:
                self._reviewed = self.clock().timestamp()
                self.watched()  # activate new Subscriptions, expire old ones, without waiting for writes
            return stats
        watching = self.watched()  # before the write transaction: activating one writes too
        failed: list[tuple[str, int | None, str]] = []
        with self.database.connection(write=True) as connection:
            store = SubscriptionStore(connection)
            events = store.claim_events(limit)
            base = SqlRepository(connection, self.database.protector, empi_queue=False)
            rows: list[tuple[str, str, str, int]] = []
            for resource_type, latest in _latest_by_type(events).items():
                for watched in (w for w in watching if w.resource_type == resource_type):
                    try:
                        with base.savepoint():  # one Subscription's failing search spoils nobody else's
                            rows.extend(self._matches(base, watched, latest))
                    except HubError as exc:
                        failed.append((watched.id, None, f"Its criteria could not be searched: {exc.message}"))
            store.add_deliveries(rows, self.clock())
            store.remove_events([e.pk for e in events])
            stats.events, stats.deliveries = len(events), len(rows)
        for subscription_id, version, error in failed:
            set_status(self.database, subscription_id, "error", error, version)
            log.warning("Subscription/%s is now error: %s", subscription_id, error)
        return stats

    @staticmethod
    def _matches(base: SqlRepository, watched: Watched, latest: dict[str, int]) -> list[tuple[str, str, str, int]]:
        """Deliveries of ``watched`` for the resources (id → newest event version) that match now."""
        if not watched.owner.allows(watched.resource_type, "r"):
            return []
        repository = ScopedRepository(base, watched.owner) if watched.owner.limited else base
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
