"""Sending Subscription notifications: rest-hook HTTP calls with retries, backoff and a delivery log.

A due delivery is leased first (its next attempt moved past the HTTP call), so two hub
processes never send the same notification at once, and no database lock is held while
the endpoint answers. Failures are retried after ``retry_seconds × 2^(attempt-1)`` (at
most an hour); after ``max_attempts`` the delivery is ``failed``, the Subscription goes
to status ``error`` with the reason, and its other pending deliveries are ``dropped``.
An ``error`` Subscription is not watched until its client sets it back to ``requested``
or ``active``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from hub.config import Settings
from hub.errors import HubError
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.fhir.subscriptions import WATCHED_STATUSES, Channel, channel_of
from hub.privacy import clip
from hub.store.database import Database
from hub.store.subscriptions import Delivery, SubscriptionStore
from hub.subscriptions.matcher import set_status

log = logging.getLogger("hub.subscriptions")
#: How long a leased delivery stays away from other senders.
LEASE = timedelta(minutes=2)
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class DeliveryStats:
    """What one delivery run did."""

    sent: int = 0
    failed_attempts: int = 0
    given_up: int = 0
    dropped: int = 0


@dataclass(frozen=True)
class Notification:
    """One HTTP request to make."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


def notification(channel: Channel, subscription_id: str, delivery: Delivery, content: bytes | None) -> Notification:
    """The rest-hook request: id-only POST to the endpoint, or the resource PUT to ``[endpoint]/[type]/[id]``."""
    reference = f"{delivery.resource_type}/{delivery.resource_id}/_history/{delivery.version_id}"
    headers = {name: value for name, value in channel.headers}
    headers.update({"X-Hub-Subscription": f"Subscription/{subscription_id}", "X-Hub-Resource": reference,
                    "X-Hub-Delivery": str(delivery.pk)})
    if channel.payload is None or content is None:
        return Notification("POST", channel.endpoint, headers, None)
    headers["Content-Type"] = f"{channel.payload}; charset=utf-8"
    return Notification("PUT", f"{channel.endpoint}/{delivery.resource_type}/{delivery.resource_id}", headers, content)


class Deliverer:
    """Sends due notifications."""

    def __init__(self, database: Database, *, max_attempts: int = 5, retry_seconds: float = 5.0,
                 timeout_seconds: float = 10.0, clock: Any = now_utc, transport: httpx.BaseTransport | None = None):
        self.database = database
        self.max_attempts = max_attempts
        self.retry = timedelta(seconds=retry_seconds)
        self.clock = clock
        self._http = httpx.Client(timeout=timeout_seconds, follow_redirects=False, transport=transport)

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> "Deliverer":
        """A deliverer with the configured attempts, retry delay and endpoint timeout."""
        return cls(database, max_attempts=settings.subscription_max_attempts,
                   retry_seconds=settings.subscription_retry_seconds,
                   timeout_seconds=settings.subscription_timeout_seconds)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def run_once(self, limit: int = 100) -> DeliveryStats:
        """Attempt the due deliveries, one Subscription's in order (a failure holds back the rest of its batch)."""
        stats = DeliveryStats()
        now: datetime = self.clock()
        with self.database.connection(write=True) as connection:
            store = SubscriptionStore(connection)
            due = store.due(now, limit)
            store.lease([d.pk for d in due], now + LEASE)
        if not due:
            return stats
        subscriptions = self._subscriptions({d.subscription_id for d in due})
        #: Subscriptions whose notification failed in this run: when their next attempt is (None: given up).
        failing: dict[str, datetime | None] = {}
        for delivery in due:
            if delivery.subscription_id in failing:
                held = failing[delivery.subscription_id]
                if held is not None:  # keep the order: wait for the failed one (given up: it was dropped)
                    self._record(delivery.pk, status="pending", attempts=delivery.attempts,
                                 at=delivery.last_attempt or now, next_attempt=held, http_status=delivery.http_status,
                                 error=delivery.error)
                continue
            outcome = self._attempt(delivery, now, subscriptions.get(delivery.subscription_id))
            if outcome == "sent":
                stats.sent += 1
            elif outcome == "dropped":
                stats.dropped += 1
            else:
                stats.failed_attempts += 1
                stats.given_up += outcome == "failed"
                failing[delivery.subscription_id] = None if outcome == "failed" else self._next(delivery.attempts + 1,
                                                                                                now)
        return stats

    def _attempt(self, delivery: Delivery, now: datetime, subscription: dict[str, Any] | None) -> str:
        if subscription is None or subscription.get("status") not in WATCHED_STATUSES:
            self._record(delivery.pk, status="dropped", attempts=delivery.attempts, at=now, next_attempt=now,
                         http_status=None, error="The Subscription is off, in error or deleted")
            return "dropped"
        try:
            channel = channel_of(subscription)
        except HubError as exc:
            self._give_up(delivery, now, None, f"The Subscription's channel is unusable: {exc.message}")
            return "failed"
        request = notification(channel, delivery.subscription_id, delivery,
                               self._content(delivery) if channel.payload else None)
        attempts = delivery.attempts + 1
        http_status: int | None = None
        try:
            response = self._http.request(request.method, request.url, headers=request.headers, content=request.body)
            http_status = response.status_code
            if 200 <= response.status_code < 300:
                self._record(delivery.pk, status="delivered", attempts=attempts, at=now, next_attempt=now,
                             http_status=http_status, error=None)
                return "sent"
            error = f"The endpoint answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"The endpoint could not be reached: {type(exc).__name__}"
        if attempts >= self.max_attempts:
            self._give_up(delivery, now, http_status, error, attempts)
            return "failed"
        self._record(delivery.pk, status="pending", attempts=attempts, at=now, next_attempt=self._next(attempts, now),
                     http_status=http_status, error=error)
        return "retry"

    def _subscriptions(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """The current Subscriptions of a run's notifications (deleted ones left out)."""
        with self.database.unit_of_work(write=False) as repository:
            stored = repository.read_current_many([("Subscription", i) for i in sorted(ids)])
        return {key[1]: jsonio.loads_stored(s.content) for key, s in stored.items() if s.content and not s.deleted}

    def _content(self, delivery: Delivery) -> bytes | None:
        """The notified version of the resource, as a read serves it."""
        with self.database.unit_of_work(write=False) as repository:
            version = repository.read_version(delivery.resource_type, delivery.resource_id, delivery.version_id)
        return version.content if version is not None else None

    def _give_up(self, delivery: Delivery, now: datetime, http_status: int | None, error: str,
                 attempts: int | None = None) -> None:
        attempts = attempts if attempts is not None else delivery.attempts
        self._record(delivery.pk, status="failed", attempts=attempts, at=now, next_attempt=now,
                     http_status=http_status, error=error)
        reason = f"Notification failed after {attempts} attempt(s): {error}"
        set_status(self.database, delivery.subscription_id, "error", clip(reason, 500))
        with self.database.connection(write=True) as connection:
            SubscriptionStore(connection).drop_pending(delivery.subscription_id, "The Subscription went to error")
        log.warning("Subscription/%s is now error: %s", delivery.subscription_id, reason)

    def _next(self, attempts: int, now: datetime) -> datetime:
        return now + min(self.retry * (2 ** (attempts - 1)), MAX_BACKOFF)

    def _record(self, delivery_pk: int, **values: Any) -> None:
        with self.database.connection(write=True) as connection:
            SubscriptionStore(connection).record(delivery_pk, **values)
