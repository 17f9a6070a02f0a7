"""The drop-directory adapter: ``ORU^R01`` files a LIS writes into a directory.

Files (``*.hl7`` and ``*.txt``; a file may hold several messages or an FHS/BHS batch)
are read in name order. Files still being written are left alone: names ending in
``.part`` or ``.tmp``, and files changed in the last ``settle_seconds`` (option, default 2).
A message that does not parse does not stop the read: it becomes a row whose raw value
keeps the file name and the text, and whose conversion raises the reason, so the hub
quarantines it. Once the hub has stored a page it calls :meth:`Hl7DropAdapter.acknowledge`,
and every file whose rows have all been acknowledged moves to ``<directory>/processed/``.

The directory must be under one of ``HUB_DROP_DIRS`` (default ``var/drop``): a source
cannot read or move files elsewhere on the hub server.

Options: ``settle_seconds``, ``timezone`` (of times without an offset, default
Asia/Shanghai), ``max_file_bytes`` (default 16 MiB; a bigger file becomes one quarantined row).
"""

from __future__ import annotations

import logging
import os
import stat
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import ConnectionProblem, LabReportRecord, Position, RecordProblem, SourceConfig, SourceRow
from adapters.files import configured_dirs, inside
from adapters.hl7v2.parse import convert, parse_oru
from adapters.hl7v2.text import decode_message, split_messages

#: Where processed files go, inside the drop directory.
PROCESSED = "processed"
#: File name endings read, and those of files still being written.
SUFFIXES = (".hl7", ".txt")
IN_PROGRESS = (".part", ".tmp")
#: Where drop directories may be when HUB_DROP_DIRS is not set.
DEFAULT_DROP_DIRS = "var/drop"
logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    """A file whose rows were handed out: the keys not yet acknowledged and the file's state then."""

    keys: Counter[str]
    signature: tuple[int, int]


class Hl7DropAdapter:
    """An :class:`adapters.base.Adapter` reading HL7 v2 lab results from a drop directory."""

    name = "hl7v2-drop"
    version = "1.0"

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        location = config.connection.strip().removeprefix("file://")
        self.directory = Path(location) if location else None
        options = config.options
        self.settle_seconds = float(options.get("settle_seconds", 2))
        self.max_file_bytes = int(options.get("max_file_bytes", 16 << 20))
        self.zone = ZoneInfo(str(options.get("timezone", "Asia/Shanghai")))
        self._pending: dict[str, _Pending] = {}

    def kinds(self) -> tuple[str, ...]:
        """Lab reports only."""
        return ("LabReport",)

    def _where(self) -> str:
        return f"the drop directory '{self.directory.name if self.directory else ''}'"

    def check(self) -> None:
        """The directory exists and can be read and written (files move to ``processed/``)."""
        if self.directory is None:
            raise ConnectionProblem("configuration", "the hl7v2-drop adapter needs a directory as its connection")
        if not inside(self.directory, configured_dirs("HUB_DROP_DIRS", DEFAULT_DROP_DIRS)):
            raise ConnectionProblem("configuration", f"{self._where()} is not under a directory of HUB_DROP_DIRS "
                                                     "(the directories the hub's operator opened to drop files)")
        try:
            found = self.directory.is_dir()
        except OSError:
            found = False
        if not found:
            raise ConnectionProblem("configuration", f"{self._where()} does not exist or is not a directory")
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise ConnectionProblem("configuration", f"{self._where()} cannot be read")
        if not os.access(self.directory, os.W_OK):
            raise ConnectionProblem("configuration", f"{self._where()} is not writable (read files move out of it)")

    def _ready(self) -> list[Path]:
        """Files ready to read, in name order (not hidden, not in progress, settled)."""
        assert self.directory is not None
        now = time.time()
        ready = []
        for path in sorted(self.directory.iterdir(), key=lambda item: item.name):
            lowered = path.name.lower()
            if path.name.startswith(".") or lowered.endswith(IN_PROGRESS) or not lowered.endswith(SUFFIXES):
                continue
            try:
                info = path.stat()
            except OSError:
                continue  # gone since the listing
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= self.settle_seconds:
                ready.append(path)
        return ready

    def read(self, kind: str, after: Position, page_size: int) -> Iterator[list[SourceRow]]:
        """Rows of the ready files, file by file; ``after`` is not used (read files move away)."""
        if kind != "LabReport":
            return
        self.check()
        page: list[SourceRow] = []
        for path in self._ready():
            try:
                info = path.stat()
                rows = self._rows(path, info.st_size, info.st_mtime)
            except OSError as exc:
                logger.warning(
                    "cannot read the drop file %s (%s); it stays for the next run", path.name, type(exc).__name__
                )
                continue
            self._pending[path.name] = _Pending(Counter(row.key for row in rows), (info.st_size, info.st_mtime_ns))
            for row in rows:
                page.append(row)
                if len(page) >= max(1, page_size):
                    yield page
                    page = []
        if page:
            yield page

    def _rows(self, path: Path, size: int, mtime: float) -> list[SourceRow]:
        """The rows of one file: one per report, or one per message that does not parse."""
        name = path.name
        moment = datetime.fromtimestamp(mtime, self.zone).isoformat()
        if size > self.max_file_bytes:
            problem = f"the file is larger than {self.max_file_bytes} bytes (option max_file_bytes)"
            return [
                SourceRow("LabReport", name, Position(moment, name), {"file": name, "message": "", "problem": problem})
            ]
        text, _ = decode_message(path.read_bytes())
        messages = split_messages(text) or [text]
        rows: list[SourceRow] = []
        for number, message in enumerate(messages, start=1):
            try:
                found = parse_oru(message)
            except RecordProblem:
                key = name if len(messages) == 1 else f"{name}#{number}"
                rows.append(SourceRow("LabReport", key, Position(moment, key), {"file": name, "message": message}))
                continue
            rows.extend(SourceRow(row.kind, row.key, row.position, {**row.raw, "file": name}) for row in found)
        return rows

    def convert(self, row: SourceRow) -> LabReportRecord:
        """The lab report of a row; :class:`RecordProblem` with the reason for a message that did not parse."""
        return convert(row, None, self.zone)

    def acknowledge(self, rows: Iterable[SourceRow]) -> None:
        """The hub stored (or quarantined) ``rows``: move each file all of whose rows are now acknowledged.

        A file changed since it was read is left in place (it is read again on the next run).
        """
        for row in rows:
            name: Any = row.raw.get("file")
            pending = self._pending.get(name) if isinstance(name, str) else None
            if pending is None or pending.keys[row.key] <= 0:
                continue
            pending.keys[row.key] -= 1
            if sum(pending.keys.values()) == 0:
                del self._pending[name]
                self._move(name, pending.signature)

    def _move(self, name: str, signature: tuple[int, int]) -> None:
        assert self.directory is not None
        source = self.directory / name
        try:
            info = source.stat()
            if (info.st_size, info.st_mtime_ns) != signature:
                logger.warning("the drop file %s changed since it was read; it stays for the next run", name)
                return
            target_dir = self.directory / PROCESSED
            target_dir.mkdir(exist_ok=True)
            target = target_dir / name
            if target.exists():
                stem, suffix = os.path.splitext(name)
                target = target_dir / f"{stem}.{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}{suffix}"
            os.replace(source, target)
        except OSError as exc:
            logger.warning("cannot move the drop file %s to %s/ (%s)", name, PROCESSED, type(exc).__name__)

    def close(self) -> None:
        """Nothing to release (files are opened and closed as they are read)."""
        self._pending.clear()


def drop(config: SourceConfig) -> Hl7DropAdapter:
    """The ``hl7v2-drop`` adapter: ``config.connection`` is the directory the LIS writes into."""
    return Hl7DropAdapter(config)
