"""The Subscription worker: matches committed writes and sends the due notifications, in the
background of the API process (every second, at once again while there is more to do)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from hub.background import PeriodicWorker
from hub.fhir.instants import now_utc
from hub.subscriptions.delivery import BATCH, Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher

log = logging.getLogger("hub.subscriptions")
#: Write events matched per batch.
MATCH_BATCH = 500
#: Finished notifications stay in the delivery log this long.
LOG_RETENTION = timedelta(days=30)
PURGE_SECONDS = 3600.0


class SubscriptionWorker(PeriodicWorker):
    """Runs the matcher over the queued write events, then the deliverer over the due notifications."""

    def __init__(self, matcher: SubscriptionMatcher, deliverer: Deliverer, interval: float = 1.0) -> None:
        super().__init__("hub-subscriptions", self._once, interval, log)
        self.matcher = matcher
        self.deliverer = deliverer
        self._purged = float("-inf")

    def _once(self) -> bool:
        matched = self.matcher.run_once(MATCH_BATCH)
        sent = self.deliverer.run_once(BATCH)
        if matched.deliveries or sent.attempted:
            log.info("Subscriptions: %d writes matched into %d notifications; %d sent, %d attempts failed, "
                     "%d given up, %d dropped", matched.events, matched.deliveries, sent.sent, sent.failed_attempts,
                     sent.given_up, sent.dropped)
        if time.monotonic() - self._purged > PURGE_SECONDS:
            self._purged = time.monotonic()
            self.deliverer.purge(now_utc() - LOG_RETENTION)
        return matched.events >= MATCH_BATCH or sent.attempted >= BATCH

    def stop(self, timeout: float = 30) -> None:
        """Stop after the current run and close the HTTP connections."""
        super().stop(timeout)
        self.deliverer.close()
