"""HL7 v2 ORU^R01 lab results into the hub: from a drop directory, and over MLLP (ACK after storing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.hl7v2.mllp import MllpServer, send_mllp
from hub.errors import StorageError
from hub.ingest.mllp import MllpIngest
from hub.registry.sources import open_adapter
from hub.store.database import Database
from tests.ingest.conftest import count, register, run

SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "hl7v2" / "samples"


def _msa(ack: str) -> list[str]:
    segment = next(s for s in ack.replace("\n", "\r").split("\r") if s.startswith("MSA"))
    return segment.split("|")


def test_drop_directory_files_are_stored_then_moved(database: Database, institutions: None, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for sample in SAMPLES.glob("*.hl7"):
        shutil.copy(sample, inbox / sample.name)
    (inbox / "garbage.hl7").write_text("this is not HL7", encoding="utf-8")
    (inbox / "incoming.hl7.part").write_text("still being copied", encoding="utf-8")
    source = register(database, "lis-drop", "hl7v2-drop", str(inbox), options={"settle_seconds": 0})
    result = run(database, source)
    assert result.status == "succeeded", result.error
    assert (result.counts.records_read, result.counts.quarantined) == (3, 1)
    assert count(database, "DiagnosticReport") == 2 and count(database, "Observation") == 5
    assert sorted(p.name for p in (inbox / "processed").iterdir()) == ["garbage.hl7", "oru_r01_cbc.hl7",
                                                                        "oru_r01_glucose.hl7"]
    assert [p.name for p in inbox.glob("*.part")] == ["incoming.hl7.part"]
    with database.ingest_state(write=False) as state:
        (entry,) = state.entries("lis-drop")
    assert entry["raw"]["message"] == "this is not HL7"  # the whole file is kept with the reason
    # the same files dropped again update nothing
    for sample in SAMPLES.glob("*.hl7"):
        shutil.copy(sample, inbox / sample.name)
    again = run(database, source)
    assert (again.counts.unchanged, again.counts.created) == (7, 0)


def test_mllp_acks_only_what_was_stored(database: Database, institutions: None, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = register(database, "lis-mllp", "hl7v2-drop", str(tmp_path))
    handler = MllpIngest(database, source, open_adapter)
    message = (SAMPLES / "oru_r01_cbc.hl7").read_text(encoding="utf-8")
    with MllpServer("127.0.0.1", 0, handler.handle) as server:
        ack = send_mllp("127.0.0.1", server.port, message)
        assert _msa(ack)[1] == "AA"
        assert count(database, "DiagnosticReport") == 1 and count(database, "Observation") == 4
        rejected = send_mllp("127.0.0.1", server.port, "MSH|^~\\&|X|Y|HUB|HUB|20240101||ADT^A01|C1|P|2.5\rPID|1")
        assert _msa(rejected)[1] == "AR" and "ORU" in _msa(rejected)[3]
        bad_flag = message.replace("|H|||F", "|??|||F", 1)
        assert _msa(send_mllp("127.0.0.1", server.port, bad_flag))[1] == "AE"

        def down(*_args: object, **_kwargs: object) -> None:
            raise StorageError("The database is unavailable or busy; nothing was changed, try again")

        monkeypatch.setattr(handler.run, "store_page", down)
        assert _msa(send_mllp("127.0.0.1", server.port, message))[1] == "AE"  # not stored: not accepted
    handler.close()
    with database.ingest_state(write=False) as state:
        reasons = sorted(e["reason"] for e in state.entries("lis-mllp"))
        (session,) = state.runs("lis-mllp")
    assert len(reasons) == 2 and any("ORU" in r for r in reasons) and any("abnormal_flag" in r for r in reasons)
    assert (session["trigger"], session["status"], session["created"]) == ("mllp", "succeeded", 5)
