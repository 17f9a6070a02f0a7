"""The EMPI worker: drains the queue of Patient writes in the background of the API process."""

from __future__ import annotations

import logging

from hub.background import PeriodicWorker
from hub.empi.engine import Engine

log = logging.getLogger("hub.empi")


class EmpiWorker(PeriodicWorker):
    """A daemon thread running the engine every ``interval`` seconds (at once when woken)."""

    def __init__(self, engine: Engine, interval: float = 2.0) -> None:
        super().__init__("hub-empi", self._place, interval, log)
        self.engine = engine

    def _place(self) -> bool:
        stats = self.engine.run(batch=500)
        if stats.processed:
            log.info("EMPI placed %d Patient writes: %s", stats.processed, stats.as_dict())
        return False  # engine.run drains the whole queue
