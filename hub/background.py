"""Background work in the API process: a daemon thread that runs one job over and over.

The EMPI matcher, the Subscription matcher and sender and the Bulk Data export runner each
run in one. A run that fails is logged and retried at the next interval (the work waits in
the database, so nothing is lost); a run that did something is followed at once by the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hub.errors import HubError


class PeriodicWorker:
    """Calls ``run_once`` every ``interval`` seconds, at once again while it reports work done."""

    def __init__(self, name: str, run_once: Callable[[], bool], interval: float, log: logging.Logger) -> None:
        self.name = name
        self.run_once = run_once
        self.interval = interval
        self.log = log
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Run now rather than at the next interval."""
        self._wake.set()

    def stop(self, timeout: float = 30) -> None:
        """Stop after the current run."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (long runs check it between steps)."""
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.run_once()
            except HubError as exc:  # the database is away: try again at the next interval
                self.log.warning("%s run failed: %s", self.name, exc.message)
            except Exception:  # a bug must not stop the work for good; it waits in the database
                self.log.exception("%s run failed", self.name)
            if busy and not self._stop.is_set():
                continue
            self._wake.wait(self.interval)
            self._wake.clear()
