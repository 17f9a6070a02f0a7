"""HL7 v2 lab results pushed over MLLP: each message is stored, then acknowledged.

``AA`` only after the message's resources committed; ``AE`` when some of its content
went to quarantine (kept with the reason, nothing lost) or the store was unavailable
(the sender resends: storing is idempotent); ``AR`` when it is not an ORU^R01 at all (the
raw message is quarantined with the reason).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

from adapters.base import Adapter, RecordProblem, SourceRow
from adapters.base import Position as _Position
from adapters.hl7v2.parse import parse_oru
from hub.errors import HubError
from hub.ingest.building import BuiltPage
from hub.ingest.pipeline import IngestRun
from hub.store.database import Database
from hub.store.sources import SourceRecord

log = logging.getLogger("hub.ingest.mllp")


class MllpIngest:
    """The handler of an MLLP listener for one registered source (adapter ``hl7v2-drop``)."""

    def __init__(self, database: Database, source: SourceRecord,
                 open_adapter: Callable[[SourceRecord], Adapter]) -> None:
        self.run = IngestRun(database, source, open_adapter)
        self._adapter = open_adapter(source)
        self._builder = self.run.builder(self._adapter)
        self._lock = threading.Lock()
        self.run_id = self.run.begin_session("mllp")

    def handle(self, message: str) -> tuple[str, str]:
        """Store one message; the ACK code and text."""
        with self._lock:
            try:
                rows = parse_oru(message)
            except RecordProblem as problem:
                digest = hashlib.sha256(message.encode("utf-8", "replace")).hexdigest()[:24]
                raw = SourceRow("LabReport", f"mllp-{digest}", _Position(), {"message": message})
                self._store(BuiltPage("LabReport", [raw], rejected=[(raw.key, dict(raw.raw), problem.reason)]))
                return "AR", problem.reason
            self._builder.normalizer = self.run.normalizer()  # tables changed since the last message apply
            page = self._builder.build("LabReport", rows)
            self._store(page)
            if page.rejected:
                return "AE", "; ".join(reason for _key, _raw, reason in page.rejected)[:200]
            return "AA", ""

    def _store(self, page: BuiltPage) -> None:
        try:
            self.run.store_page(page, move_watermark=False)
        except HubError as error:
            log.warning("MLLP message not stored: %s", error.message)
            raise

    def close(self) -> None:
        """End the listener's run."""
        self.run.end_session()
        self._adapter.close()
