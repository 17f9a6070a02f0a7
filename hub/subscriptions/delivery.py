"""Sending Subscription notifications: rest-hook HTTP calls with retries, backoff and a delivery log.

A run leases a batch of due deliveries (their next attempt moved past the time the batch
can take), so two hub processes never send the same notification at once and no database
lock is held while an endpoint answers. Failures are retried after ``retry_seconds ×
2^(attempt-1)`` (at most an hour); after ``max_attempts`` the delivery is ``failed``, the
Subscription goes to status ``error`` with the reason, and its other pending deliveries are
``dropped``. An ``error`` Subscription is not watched until its client sets it back to
``requested`` or ``active``. Within a run, a failed notification holds back the rest of its
Subscription's; notifications written later may still overtake a retry.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from hub.config import Settings
from hub.errors import HubError
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.fhir.subscriptions import WATCHED_STATUSES, Channel, channel_of, endpoint_allowed
from hub.privacy import clip
from hub.store.database import Database
from hub.store.subscriptions import Delivery, SubscriptionStore
from hub.subscriptions.matcher import set_status

log = logging.getLogger("hub.subscriptions")
MAX_BACKOFF = timedelta(hours=1)
#: Deliveries one run leases and tries.
BATCH = 20
#: Defaults of the settings (``HUB_SUBSCRIPTION_*``).
_DEFAULTS = Settings()


@dataclass
class DeliveryStats:
    """What one delivery run did."""

    attempted: int = 0
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

    def __init__(self, database: Database, *, max_attempts: int = _DEFAULTS.subscription_max_attempts,
                 retry_seconds: float = _DEFAULTS.subscription_retry_seconds,
                 timeout_seconds: float = _DEFAULTS.subscription_timeout_seconds, endpoints: Sequence[str] = (),
                 clock: Any = now_utc, transport: httpx.BaseTransport | None = None):
        self.database = database
        self.max_attempts = max_attempts
        self.retry = timedelta(seconds=retry_seconds)
        #: URL prefixes endpoints must start with (``HUB_SUBSCRIPTION_ENDPOINTS``; empty: any).
        self.endpoints = tuple(endpoints)
        #: Long enough for a whole batch of endpoints that time out.
        self.lease = timedelta(seconds=BATCH * timeout_seconds + 60)
        self.clock = clock
        self._http = httpx.Client(timeout=timeout_seconds, follow_redirects=False, transport=transport)

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> "Deliverer":
        """A deliverer with the configured attempts, retry delay, endpoint timeout and allowed endpoints."""
        return cls(database, max_attempts=settings.subscription_max_attempts,
                   retry_seconds=settings.subscription_retry_seconds,
                   timeout_seconds=settings.subscription_timeout_seconds, endpoints=settings.subscription_endpoints)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def purge(self, before: datetime) -> int:
        """Forget finished notifications older than ``before`` (the delivery log's retention)."""
        with self.database.connection(write=True) as connection:
            return SubscriptionStore(connection).purge(before)

    def run_once(self, limit: int = BATCH) -> DeliveryStats:
        """Attempt up to ``limit`` due deliveries, each Subscription's in order."""
        stats = DeliveryStats()
        now: datetime = self.clock()
        with self.database.connection(write=True) as connection:
            store = SubscriptionStore(connection)
            due = store.due(now, limit)
            store.lease([d.pk for d in due], now + self.lease)
        if not due:
            return stats
        subscriptions = self._subscriptions({d.subscription_id for d in due})
        #: Subscriptions whose notification failed in this run: when their next attempt is (None: given up).
        failing: dict[str, datetime | None] = {}
        for delivery in due:
            if delivery.subscription_id in failing:
                held = failing[delivery.subscription_id]
                if held is not None:  # keep the order: wait for the failed one (given up: it was dropped)
                    self._record(delivery.pk, status="pending", attempts=delivery.attempts, at=delivery.last_attempt,
                                 next_attempt=held, http_status=delivery.http_status, error=delivery.error)
                continue
            stats.attempted += 1
            try:
                outcome = self._attempt(delivery, now, subscriptions.get(delivery.subscription_id))
            except Exception:  # a bug must not keep the other Subscriptions' notifications waiting
                reference = uuid.uuid4().hex[:12]
                log.exception("notification %s failed (reference %s)", delivery.pk, reference)
                outcome = self._failed(delivery, now, None, f"The hub failed to send it (reference {reference})")
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
        if not endpoint_allowed(channel.endpoint, self.endpoints):
            self._give_up(delivery, now, None, "The endpoint is not among those the hub may notify "
                                               "(HUB_SUBSCRIPTION_ENDPOINTS)")
            return "failed"
        request = notification(channel, delivery.subscription_id, delivery,
                               self._content(delivery) if channel.payload else None)
        http_status: int | None = None
        try:
            response = self._http.request(request.method, request.url, headers=request.headers, content=request.body)
            http_status = response.status_code
            if 200 <= response.status_code < 300:
                self._record(delivery.pk, status="delivered", attempts=delivery.attempts + 1, at=now,
                             next_attempt=now, http_status=http_status, error=None)
                return "sent"
            error = f"The endpoint answered HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"The endpoint could not be reached: {type(exc).__name__}"
        return self._failed(delivery, now, http_status, error)

    def _failed(self, delivery: Delivery, now: datetime, http_status: int | None, error: str) -> str:
        """Record a failed attempt: retried later (``retry``), or the last one (``failed``)."""
        attempts = delivery.attempts + 1
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
        reason = f"Notification failed after {attempts} attempt(s): {error}"
        with self.database.connection(write=True) as connection:
            store = SubscriptionStore(connection)
            store.record(delivery.pk, status="failed", attempts=attempts, at=now, next_attempt=now,
                         http_status=http_status, error=error)
            store.drop_pending(delivery.subscription_id, "The Subscription went to error")
        set_status(self.database, delivery.subscription_id, "error", clip(reason, 500))
        log.warning("Subscription/%s is now error: %s", delivery.subscription_id, reason)

    def _next(self, attempts: int, now: datetime) -> datetime:
        return now + min(self.retry * (2 ** (attempts - 1)), MAX_BACKOFF)

    def _record(self, delivery_pk: int, **values: Any) -> None:
        with self.database.connection(write=True) as connection:
            SubscriptionStore(connection).record(delivery_pk, **values)
