"""The HR mark, set on every result as it is written, and set again when the rules change.

Results that qualify for recognition carry ``meta.tag`` ``urn:hub:recognition|HR`` as stored, so
reads, searches (``_tag=urn:hub:recognition|HR``), Subscriptions and exports carry it with no work
at read time. The tag is the hub's: one a writer sends is removed unless the rules give it. When
the catalogue or a quality-control record changes, :func:`remark` writes again the results whose
mark changed (a new version each, nothing else in them changed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from hub.coding.terminology import escape
from hub.errors import VersionConflict
from hub.fhir import jsonio
from hub.fhir.marking import with_tag
from hub.recognition.catalogue import Item
from hub.recognition.rules import HR_SYSTEM, HR_TAG, RESULT_TYPES, Rules, RulesCache
from hub.store.database import Database

#: Results re-marked per transaction.
BATCH = 500
_ATTEMPTS = 3
#: Re-markings reading at most this many results run before the change is answered; larger ones run in the
#: background (``GET /recognition/remark`` shows them; ``hub recognition remark`` redoes an interrupted one).
SYNC_REMARK = 5000
log = logging.getLogger("hub.recognition")


class HrMarker:
    """Sets or clears the HR tag on the results one unit of work writes."""

    def __init__(self, cache: RulesCache, connection: Connection) -> None:
        self.cache = cache
        self.connection = connection
        self._rules: Rules | None = None

    def mark(self, resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` with the HR tag if it qualifies, without it otherwise."""
        if resource_type not in RESULT_TYPES:
            return resource
        if self._rules is None:  # read once per unit of work, when it writes a result
            self._rules = self.cache.current(self.connection, lock=True)
        return with_tag(resource, HR_SYSTEM, HR_TAG if self._rules.is_hr(resource_type, resource) else None)


@dataclass
class Remarked:
    """What a re-marking changed."""

    examined: int = 0
    updated: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"examined": self.examined, "updated": self.updated}


def remark(database: Database, items: Iterable[Item]) -> Remarked:
    """Write again the stored results of ``items`` whose HR mark changed (every result of the item is read:
    its year may come from ``issued``, its performer from a department or the owner's tag)."""
    done = Remarked()
    for item in items:
        criteria = f"code={escape(item.system)}|{escape(item.code)}"
        after: int | None = 0
        while after is not None:
            for attempt in range(_ATTEMPTS):
                try:
                    after = _batch(database, item.resource_type, criteria, after, done)
                    break
                except VersionConflict:  # a writer changed one of them meanwhile: read the page again
                    if attempt == _ATTEMPTS - 1:
                        raise
    return done


def estimate(database: Database, items: Iterable[Item]) -> int:
    """How many stored results a re-marking of ``items`` reads."""
    with database.fhir_service(write=False) as service:
        return sum(service.repository.count(service.conditional_spec(
            item.resource_type, f"code={escape(item.system)}|{escape(item.code)}")) for item in items)


class Remarker:
    """Runs re-markings: small ones at once, large ones in one background thread (later ones queue behind)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Item] = {}
        self._thread: threading.Thread | None = None
        self.last: dict[str, Any] | None = None

    def run(self, items: Iterable[Item], *, wait: bool) -> dict[str, Any]:
        """Re-mark ``items`` now (``wait``, or few results), or queue them for the background thread."""
        items = list(items)
        if wait or not items:
            return remark(self.database, items).as_dict()
        count = estimate(self.database, items)
        if count <= SYNC_REMARK:
            return remark(self.database, items).as_dict()
        with self._lock:
            self._pending.update({(i.system, i.code): i for i in items})
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, daemon=True, name="recognition-remark")
                self._thread.start()
        return {"running": True, "items": len(items), "results": count}

    def status(self) -> dict[str, Any]:
        """Whether a background re-marking runs, what waits, and how the last one ended."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return {"running": running, "pending_items": len(self._pending), "last": self.last}

    def _drain(self) -> None:
        while True:
            with self._lock:
                items = list(self._pending.values())
                self._pending.clear()
                if not items:
                    return
            try:
                done = remark(self.database, items)
                self.last = {**done.as_dict(), "items": len(items), "failed": None}
            except Exception as failure:  # noqa: BLE001 - reported in the log and the status; the repair redoes it
                log.exception("re-marking %d recognition items failed", len(items))
                self.last = {"items": len(items), "failed": type(failure).__name__}


def _batch(database: Database, resource_type: str, criteria: str, after: int, done: Remarked) -> int | None:
    with database.fhir_service(write=True) as service:
        spec = replace(service.conditional_spec(resource_type, criteria), count=BATCH, after=after or None)
        page = [s for s in service.repository.search(spec) if s.content is not None]
        if not page:
            return None
        outcomes = service.upsert_many([(resource_type, s.id, jsonio.loads_stored(s.content or b"{}"))
                                        for s in page])
        done.examined += len(page)
        done.updated += sum(1 for o in outcomes if o == "updated")
        return max(s.pk for s in page) if len(page) == BATCH else None
