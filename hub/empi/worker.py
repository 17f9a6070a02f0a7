"""The EMPI worker: drains the queue of Patient writes in the background of the API process."""

from __future__ import annotations

import logging
import threading

from hub.empi.engine import Engine
from hub.errors import HubError

log = logging.getLogger("hub.empi")


class EmpiWorker:
    """A daemon thread running the engine every ``interval`` seconds (at once when woken)."""

    def __init__(self, engine: Engine, interval: float = 2.0) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hub-empi", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run now rather than at the next interval (after a large write)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the current run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stats = self.engine.run(batch=500)
                if stats.processed:
                    log.info("EMPI placed %d Patient writes: %s", stats.processed, stats.as_dict())
            except HubError as exc:  # the database is away: try again at the next interval
                log.warning("EMPI run failed: %s", exc.message)
            except Exception:  # a bug must not stop matching for good; the queue keeps the writes
                log.exception("EMPI run failed")
            self._wake.wait(self.interval)
            self._wake.clear()
