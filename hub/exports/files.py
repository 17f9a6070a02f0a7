"""The NDJSON files of export jobs: a directory per job under ``HUB_EXPORT_DIR``, and in it one per
run of the job (a run taken over by another never touches the other's files).

Lines are written as the resources are stored, ID and phone numbers still sealed (the
files are personal data at rest, as the database is); they are revealed line by line when
the asking client downloads a file. Memory stays flat: one buffered line at a time.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from hub.errors import NotFound
from hub.fhir.protected import PersonalDataProtector
from hub.privacy import TOKEN_PREFIX
from hub.store.exports import ExportFile

#: File names the hub writes: ``Observation-3.ndjson``, ``errors-1.ndjson``.
FILE_NAME = re.compile(r"^[A-Za-z]{1,64}-[0-9]{1,6}\.ndjson$")
_JOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Bytes handed to the HTTP response at a time when a file is served.
CHUNK = 256 * 1024
#: Lines holding an encrypted value (the rest are served as written).
_SEALED = TOKEN_PREFIX.encode()


@dataclass
class _Open:
    resource_type: str
    kind: str
    seq: int
    name: str
    handle: IO[bytes]
    count: int = 0
    size: int = 0


@dataclass
class NdjsonWriter:
    """Writes one job's files: a file per type, a new one every ``per_file`` resources."""

    directory: Path
    per_file: int
    written: list[ExportFile] = field(default_factory=list)
    _open: dict[str, _Open] = field(default_factory=dict)
    _seq: dict[str, int] = field(default_factory=dict)

    def write(self, resource_type: str, content: bytes) -> None:
        """One resource (its stored JSON) as one line."""
        if b"\n" in content or b"\r" in content:  # stored JSON is compact; never let a line break split it
            content = orjson.dumps(orjson.loads(content))
        self._line(resource_type, "output", content)

    def error(self, outcome: dict[str, object]) -> None:
        """One OperationOutcome in the error file."""
        self._line("errors", "error", orjson.dumps(outcome))

    def _line(self, key: str, kind: str, content: bytes) -> None:
        current = self._open.get(key)
        if current is None or current.count >= self.per_file:
            if current is not None:
                self._close(current)
            seq = self._seq.get(key, 0) + 1
            self._seq[key] = seq
            name = f"{key}-{seq}.ndjson"
            current = self._open[key] = _Open("OperationOutcome" if kind == "error" else key, kind, seq, name,
                                              (self.directory / name).open("wb", buffering=CHUNK))
        current.handle.write(content)
        current.handle.write(b"\n")
        current.count += 1
        current.size += len(content) + 1

    def finish_type(self, resource_type: str) -> None:
        """Close the type's file (a type is written once, so its file is complete)."""
        current = self._open.pop(resource_type, None)
        if current is not None:
            self._close(current)

    def close(self) -> list[ExportFile]:
        """Close every file; the files written, in order."""
        for current in list(self._open.values()):
            self._close(current)
        self._open.clear()
        return list(self.written)

    def _close(self, current: _Open) -> None:
        current.handle.close()
        self.written.append(ExportFile(current.name, current.seq, current.resource_type, current.kind,
                                       current.count, current.size))


class ExportFiles:
    """The export directory."""

    def __init__(self, root: str | Path, per_file: int) -> None:
        self.root = Path(root)
        self.per_file = per_file

    def job_dir(self, job_id: str) -> Path:
        """The directory of a job (its id is checked: no path ever comes from a request as is)."""
        if not _JOB_ID.match(job_id):
            raise NotFound("No such export")
        return self.root / job_id

    def run_dir(self, job_id: str, attempt: int) -> Path:
        """The directory of one run of a job."""
        return self.job_dir(job_id) / f"run-{attempt}"

    def writer(self, job_id: str, attempt: int) -> NdjsonWriter:
        """A writer into a fresh, empty directory for this run of the job."""
        directory = self.run_dir(job_id, attempt)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, mode=0o700)
        return NdjsonWriter(directory, self.per_file)

    def remove(self, job_id: str, attempt: int | None = None) -> None:
        """Delete a job's files (of one run, or all)."""
        shutil.rmtree(self.run_dir(job_id, attempt) if attempt is not None else self.job_dir(job_id),
                      ignore_errors=True)

    def directories(self) -> list[str]:
        """Job ids that have a directory."""
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir() if p.is_dir() and _JOB_ID.match(p.name)]

    def read(self, job_id: str, attempt: int, name: str, protector: PersonalDataProtector) -> Iterator[bytes]:
        """A file of the run that completed the job, in chunks, sealed ID and phone numbers revealed line by line."""
        if not FILE_NAME.match(name):
            raise NotFound(f"No export file named '{name[:80]}'")
        try:
            handle = (self.run_dir(job_id, attempt) / name).open("rb")
        except OSError:  # not there, or removed (expired, cancelled) meanwhile
            raise NotFound(f"No export file named '{name}'") from None
        return _revealed(handle, protector)


def _revealed(handle: IO[bytes], protector: PersonalDataProtector) -> Iterator[bytes]:
    with handle:
        chunk: list[bytes] = []
        size = 0
        for line in handle:
            if _SEALED in line:
                line = protector.reveal_bytes(line.rstrip(b"\n")) + b"\n"
            chunk.append(line)
            size += len(line)
            if size >= CHUNK:
                yield b"".join(chunk)
                chunk, size = [], 0
        if chunk:
            yield b"".join(chunk)
