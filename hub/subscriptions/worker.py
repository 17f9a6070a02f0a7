"""The Subscription worker: matches committed writes and sends the due notifications, in the
background of the API process (every second, at once when woken)."""

from __future__ import annotations

import logging

from hub.background import PeriodicWorker
from hub.subscriptions.delivery import Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher

log = logging.getLogger("hub.subscriptions")
#: Write events matched per batch.
MATCH_BATCH = 500


class SubscriptionWorker(PeriodicWorker):
    """Runs the matcher over the queued write events, then the deliverer over the due notifications."""

    def __init__(self, matcher: SubscriptionMatcher, deliverer: Deliverer, interval: float = 1.0) -> None:
        super().__init__("hub-subscriptions", self._once, interval, log)
        self.matcher = matcher
        self.deliverer = deliverer

    def _once(self) -> bool:
        matched = self.matcher.run_once(MATCH_BATCH)
        sent = self.deliverer.run_once()
        if matched.deliveries or sent.sent or sent.failed_attempts:
            log.info("Subscriptions: %d events matched into %d notifications; %d sent, %d attempts failed",
                     matched.events, matched.deliveries, sent.sent, sent.failed_attempts)
        return matched.events >= MATCH_BATCH

    def stop(self, timeout: float = 30) -> None:
        """Stop after the current run and close the HTTP connections."""
        super().stop(timeout)
        self.deliverer.close()
