"""The HL7 v2 ORU^R01 adapter: parsing, conversion, ACKs, the MLLP listener and the drop directory."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest

from adapters.base import ConnectionProblem, LabReportRecord, LabResultRecord, Position, RecordProblem, SourceConfig
from adapters.fields import DEFAULT_ZONE
from adapters.hl7v2.ack import ack
from adapters.hl7v2.drop import Hl7DropAdapter, drop
from adapters.hl7v2.mllp import MllpClient, MllpServer, frame, send_mllp
from adapters.hl7v2.parse import convert, parse_oru

SAMPLES = Path(__file__).resolve().parents[2] / "adapters" / "hl7v2" / "samples"
CBC = (SAMPLES / "oru_r01_cbc.hl7").read_text(encoding="utf-8")
GLUCOSE = (SAMPLES / "oru_r01_glucose.hl7").read_text(encoding="utf-8")
CST = timezone(timedelta(hours=8))


def message(*segments: str, kind: str = "ORU^R01^ORU_R01", version: str = "2.5") -> str:
    """A small message: an MSH then ``segments``, separated by ``\\r``."""
    msh = f"MSH|^~\\&|LIS|CHC|HUB|REG|20240305100000||{kind}|CTRL9|P|{version}"
    return "\r".join((msh,) + segments) + "\r"


PID = "PID|1||P001^^^CHC^MR||王^五||19700101|M"
OBR = "OBR|1||F100|CBC^血常规|||20240305080000|||||||||||||||20240305090000|||{status}"
OBX = "OBX|{n}|NM|WBC^白细胞||{value}|10*9/L|3.5-9.5|{flag}|||{obx_status}"


def one(status: str = "F", value: str = "6.5", flag: str = "", obx_status: str = "F") -> LabReportRecord:
    obx = OBX.format(n=1, value=value, flag=flag, obx_status=obx_status)
    (row,) = parse_oru(message(PID, OBR.format(status=status), obx))
    return convert(row)


def test_cbc_sample_converts_field_by_field() -> None:
    (row,) = parse_oru(CBC)
    assert (row.kind, row.position) == ("LabReport", Position("20240301093000+0800", "LIS-240301-0123"))
    assert row.raw["msh"] == {"sending_application": "LIS", "sending_facility": "示例县人民医院",
                              "control_id": "LIS20240301000123", "time": "20240301093005+0800", "version": "2.5"}
    assert row.raw["pid"] == {"patient_id": "MZ0012345", "name": "张三", "birth": "19800512", "sex": "M"}
    assert json.loads(json.dumps(row.raw))["obr"]["placer_order"] == "HIS-ORD-0001"  # JSON-able, as quarantine needs
    reported = datetime(2024, 3, 1, 9, 30, tzinfo=CST)
    items = [("WBC", "白细胞计数", "6.52", "10*9/L", "3.5-9.5", "N"),
             ("RBC", "红细胞计数", "4.65", "10*12/L", "4.3-5.8", "N"),
             ("HGB", "血红蛋白", "142", "g/L", "130-175", "N"),
             ("PLT", "血小板计数", "368", "10*9/L", "125-350", "H")]  # one H flag
    assert convert(row, "Organization/chc-1") == LabReportRecord(
        key="LIS-240301-0123", updated_at=reported, patient_key="MZ0012345", report_name="血常规",
        report_time=reported, status="final", report_code="CBC", encounter_key="V20240301008", specimen="全血",
        collected_at=datetime(2024, 3, 1, 8, 15, tzinfo=CST), performing_institution="Organization/chc-1",
        results=tuple(LabResultRecord(f"LIS-240301-0123-{n}", *item) for n, item in enumerate(items, start=1)))


def test_glucose_sample_falls_back_to_placer_number_msh7_and_spm() -> None:
    (row,) = parse_oru(GLUCOSE)  # \n separated, no PV1, no OBR-3/OBR-22, specimen in SPM-4, times without offset
    reported = datetime(2024, 3, 2, 10, 15, tzinfo=DEFAULT_ZONE)
    assert (row.key, row.position) == ("HIS-ORD-0456", Position("20240302101500", "HIS-ORD-0456"))
    assert row.raw["pid"] == {"patient_id": "JD0000789", "name": "李四", "birth": "19650918", "sex": "F"}
    assert convert(row) == LabReportRecord(
        key="HIS-ORD-0456", updated_at=reported, patient_key="JD0000789", report_name="空腹血糖",
        report_time=reported, status="final", report_code="FBG", specimen="血清",
        collected_at=datetime(2024, 3, 2, 7, 30, tzinfo=DEFAULT_ZONE),
        results=(LabResultRecord("HIS-ORD-0456-1", "GLU", "葡萄糖", "5.6", "mmol/L", "3.9-6.1", "N"),))


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_segment_separators_are_equivalent(separator: str) -> None:
    text = separator.join(line for line in CBC.replace("\r\n", "\r").split("\r") if line)
    assert [(r.key, r.raw) for r in parse_oru(separator + text + separator * 2)] == [(r.key, r.raw) for r in
                                                                                       parse_oru(CBC)]


def test_several_order_observations_become_several_reports() -> None:
    text = message(PID, "PV1|1|I|||||||||||||||||V9", "OBR|1|||CBC^血常规|||||||||||||||||||||F", "SPM|1|||BLD^全血",
                   OBX.format(n=1, value="6.5", flag="", obx_status="F"), "NTE|1||备注", "OBX|2|NM|RBC^红细胞||4.6",
                   "OBR|2|||GLU^血糖|||||||||||||||||||||P", OBX.format(n=1, value="7.9", flag="H", obx_status="P"),
                   "SPM|1|||SER^血清", "OBX|2|ST|COND^标本状态||合格||||||F")  # a specimen observation, not a result
    first, second = (convert(row) for row in parse_oru(text))
    assert (first.key, first.report_name, first.status, first.encounter_key) == ("CTRL9-1", "血常规", "final", "V9")
    assert (second.key, second.status, second.specimen, first.specimen) == ("CTRL9-2", "preliminary", "血清", "全血")
    assert [r.value for r in first.results] == ["6.5", "4.6"]
    assert [(r.value, r.abnormal_flag) for r in second.results] == [("7.9", "H")]
    same = message(PID, "OBR|1||S1|CBC^血常规", "OBR|2||S1|CRP^C反应蛋白")
    assert [row.key for row in parse_oru(same)] == ["S1", "S1-CRP"]


@pytest.mark.parametrize(("text", "reason"), [
    (message(PID, kind="ADT^A01"), "ADT^A01, not ORU^R01 (MSH-9)"),
    ("", "does not start with an MSH segment"),
    (message(PID), "no OBR segment"),
])
def test_what_is_not_an_oru_r01_is_a_record_problem(text: str, reason: str) -> None:
    with pytest.raises(RecordProblem, match=re.escape(reason)):
        parse_oru(text)


@pytest.mark.parametrize(("changes", "field_name", "where"), [
    ({"20240305090000": "2024-03-05 09:00"}, "report_time", "OBR-22"),
    ({"20240305080000": "20241305080000"}, "collected_at", "OBR-7"),
    ({"20240305090000": "", "20240305100000": "yesterday"}, "report_time", "MSH-7"),
    ({"20240305090000": "", "20240305100000": ""}, "report_time", "OBR-22 and MSH-7 are empty"),
])
def test_bad_timestamp_names_the_field(changes: dict[str, str], field_name: str, where: str) -> None:
    text = message(PID, OBR.format(status="F"), OBX.format(n=1, value="1", flag="", obx_status="F"))
    for old, new in changes.items():
        text = text.replace(old, new)
    with pytest.raises(RecordProblem) as caught:
        convert(parse_oru(text)[0])
    assert caught.value.field_name == field_name and where in caught.value.reason


def test_abnormal_flags_value_types_and_latin_names() -> None:
    assert [one(flag=f).results[0].abnormal_flag for f in ("", "h", "LL", "AA", "N")] == [None, "H", "LL", "A", "N"]
    with pytest.raises(RecordProblem, match="OBX 1: OBX-8 '↑'") as caught:
        one(flag="↑")
    assert caught.value.field_name == "abnormal_flag"
    text = message("PID|1||P2||Smith^John||19700101|M", OBR.format(status="F"), "OBX|1|SN|TITER^滴度||^1^:^128",
                   "OBX|2|CWE|HBSAG^乙肝表面抗原||NEG^阴性", "OBX|3|ST|NOTE^说明||a\\T\\b|||A")
    (row,) = parse_oru(text)
    assert row.raw["pid"]["name"] == "Smith John"
    assert [(r.value, r.abnormal_flag) for r in convert(row).results] == [("1:128", None), ("阴性", None), ("a&b", "A")]


def test_result_status_table_0123_fallbacks_and_problems() -> None:
    table = {"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "partial", "A": "partial",
             "I": "registered", "S": "registered", "O": "registered"}
    assert {code: one(status=code).status for code in table} == table
    assert one(status="", obx_status="P").status == "preliminary"  # OBR-25 empty: the OBX-11 all results share
    assert one(status="", obx_status="").status == "final"  # nothing said: the record's default
    with pytest.raises(RecordProblem, match="table 0123"):
        one(status="Q")
    assert one(value="", obx_status="I").results == ()  # a pending result is not a result yet
    with pytest.raises(RecordProblem, match="value: OBX 1: required value is missing"):
        one(value="", obx_status="F")
    with pytest.raises(RecordProblem, match=r"patient_key: required value is missing \(PID-3\)"):
        convert(parse_oru(message("PID|1", OBR.format(status="F")))[0])


def test_ack_accept_swaps_applications_and_echoes_the_control_id() -> None:
    answer = hl7.parse(ack(CBC, "AA"))
    msh = answer.segment("MSH")
    assert [str(msh(n)) for n in (3, 4, 5, 6, 9, 11, 12)] == [
        "HUB", "区域健康数据中心", "LIS", "示例县人民医院", "ACK^R01^ACK", "P", "2.5"]
    assert str(msh(10)) not in ("", "LIS20240301000123")
    assert [str(f) for f in answer.segment("MSA")[1:3]] == ["AA", "LIS20240301000123"]
    assert "ERR" not in [str(segment[0]) for segment in answer]


@pytest.mark.parametrize("code", ["AE", "AR"])
def test_ack_error_carries_an_err_segment_and_garbage_gets_an_ar(code: str) -> None:
    answer = hl7.parse(ack(CBC, code, "bad|text"))
    assert answer["MSA.F1"] == code and answer["MSA.F2"] == "LIS20240301000123" and answer["MSA.F3"] == "bad|text"
    assert (answer["ERR.F3.R1.C1"], answer["ERR.F4"], answer["ERR.F8"]) == ("207", "E", "bad|text")
    assert hl7.parse(ack(message(PID, version="2.3"), code))["ERR.F1.R1.C4.S1"] == "207"
    with pytest.raises(ValueError):
        ack(CBC, "OK")
    answer = hl7.parse(ack("\x00garbage\x1c", "AR", "not an HL7 message"))  # a placeholder header
    assert (answer["MSH.F3"], answer["MSH.F9"], answer["MSH.F12"]) == ("HUB", "ACK", "2.5")
    assert (answer["MSA.F1"], answer["MSA.F2"], answer["ERR.F3.R1.C1"]) == ("AR", "", "200")


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(10) == b""
    except ConnectionResetError:
        return True


def test_mllp_two_messages_on_one_connection() -> None:
    received: list[str] = []
    with MllpServer("127.0.0.1", 0, lambda m: (received.append(m), ("AA", ""))[1]) as server:
        assert server.port != 0
        with MllpClient("127.0.0.1", server.port) as client:
            answers = [hl7.parse(client.send(text)) for text in (CBC, GLUCOSE)]
        assert send_mllp("127.0.0.1", server.port, CBC).startswith("MSH|")
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    with idle:
        assert closed(idle)  # stop() does not wait for idle connections
    assert [(a["MSA.F1"], a["MSA.F2"]) for a in answers] == [("AA", "LIS20240301000123"), ("AA", "CHC20240302000045")]
    assert [r.key for r in parse_oru(received[0])] == ["LIS-240301-0123"] and len(received) == 3


def test_mllp_handler_failure_is_an_ae_and_the_server_keeps_serving() -> None:
    def handle(text: str) -> tuple[str, str]:
        if "CTRL9" in text:
            raise RuntimeError("database down for 张三")
        return "AA", ""

    with MllpServer("127.0.0.1", 0, handle) as server, MllpClient("127.0.0.1", server.port) as client:
        failed = client.send(message(PID))
        assert hl7.parse(failed)["MSA.F1"] == "AE" and "张三" not in failed and "database" not in failed
        assert hl7.parse(client.send(CBC))["MSA.F1"] == "AA"


def test_mllp_frames_split_across_packets_and_gb18030() -> None:
    received: list[str] = []
    with MllpServer("127.0.0.1", 0, lambda m: (received.append(m), ("AA", ""))[1]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            data = b"\r\n" + frame(GLUCOSE, "gb18030")
            for start in range(0, len(data), 7):
                sock.sendall(data[start:start + 7])
                time.sleep(0.001)
            answer = b""
            while not answer.endswith(b"\x1c\r"):
                answer += sock.recv(65536)
    assert answer.startswith(b"\x0bMSH|") and answer.endswith(b"\x1c\r") and "李^四" in received[0]
    assert "区域健康数据中心".encode("gb18030") in answer  # answered in the sender's encoding


def test_mllp_oversize_message_is_rejected_and_closed() -> None:
    with MllpServer("127.0.0.1", 0, lambda m: ("AA", ""), max_size=2000) as server:
        with MllpClient("127.0.0.1", server.port) as client:
            answer = client.send(CBC + "NTE|1||" + "x" * 5000 + "\r")
            assert hl7.parse(answer)["MSA.F1"] == "AR" and "message too large" in answer
            assert hl7.parse(answer)["MSA.F2"] == "LIS20240301000123"
            with pytest.raises((ConnectionError, OSError)):
                client.send(CBC)
    server.stop()  # stopping twice is harmless


def dropped(directory: Path, name: str, text: str, age: float = 60) -> None:
    (directory / name).write_bytes(text.encode("utf-8"))
    os.utime(directory / name, (time.time() - age,) * 2)


def adapter(directory: Path, settle: float = 0) -> Hl7DropAdapter:
    return drop(SourceConfig("lis-1", "Organization/chc-1", str(directory), {"settle_seconds": settle}))


def test_drop_reads_settled_files_in_name_order_and_moves_them_when_acknowledged(tmp_path: Path) -> None:
    dropped(tmp_path, "b.txt", GLUCOSE)
    dropped(tmp_path, "a.hl7", message(PID, "OBR|1||R1|CBC^血常规", "OBR|2||R2|CRP^C反应蛋白") + CBC)
    for name in ("c.hl7.part", "d.tmp", "e.dat", ".hidden.hl7"):
        dropped(tmp_path, name, CBC)
    dropped(tmp_path, "z.hl7", CBC, age=0)
    source = adapter(tmp_path, settle=30)
    assert (source.name, source.version, source.kinds()) == ("hl7v2-drop", "1.0", ("LabReport",))
    pages = source.read("LabReport", Position(), 2)
    first = next(pages)
    assert [row.key for row in first] == ["R1", "R2"] and first[0].raw["file"] == "a.hl7"
    source.acknowledge(first)
    assert (tmp_path / "a.hl7").exists()  # its third report has not been stored yet
    rest = list(pages)
    assert [[row.key for row in page] for page in rest] == [["LIS-240301-0123", "HIS-ORD-0456"]]
    assert source.convert(rest[0][1]).report_name == "空腹血糖"
    source.acknowledge(rest[0])
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == ["a.hl7", "b.txt"]
    assert not (tmp_path / "a.hl7").exists() and (tmp_path / "z.hl7").exists() and (tmp_path / "d.tmp").exists()
    assert list(source.read("Patient", Position(), 10)) == []
    assert [row.key for page in adapter(tmp_path).read("LabReport", Position(), 10) for row in page] == [
        "LIS-240301-0123"]  # z.hl7 once settled


def test_drop_garbage_becomes_rows_that_quarantine_and_check_names_only_the_directory(tmp_path: Path) -> None:
    dropped(tmp_path, "bad.hl7", "\x00\x01 this is not HL7")
    dropped(tmp_path, "adt.hl7", message(PID, kind="ADT^A01"))
    source = adapter(tmp_path)
    (page,) = source.read("LabReport", Position(), 10)
    assert [row.key for row in page] == ["adt.hl7", "bad.hl7"]
    assert page[1].raw == {"file": "bad.hl7", "message": "\x01 this is not HL7"} and page[1].position.key == "bad.hl7"
    json.dumps(page[1].raw)
    with pytest.raises(RecordProblem, match="ADT"):
        source.convert(page[0])
    with pytest.raises(RecordProblem, match="MSH"):
        source.convert(page[1])
    source.acknowledge(page)
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == ["adt.hl7", "bad.hl7"]
    with pytest.raises(ConnectionProblem) as caught:
        adapter(tmp_path / "secret-parent" / "inbox").check()
    assert caught.value.reason == "configuration" and "inbox" in caught.value.message
    assert "secret-parent" not in caught.value.message and str(tmp_path) not in caught.value.message
    with pytest.raises(ConnectionProblem, match="needs a directory"):
        drop(SourceConfig("lis-1", "Organization/chc-1", " ")).check()


def test_drop_leaves_a_file_changed_after_reading_and_keeps_same_names(tmp_path: Path) -> None:
    dropped(tmp_path, "r.hl7", CBC)
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "r.hl7").write_text("earlier")
    source = adapter(tmp_path)
    (page,) = source.read("LabReport", Position(), 10)
    dropped(tmp_path, "r.hl7", GLUCOSE, age=30)
    source.acknowledge(page)
    assert (tmp_path / "r.hl7").exists()
    (page,) = source.read("LabReport", Position(), 10)
    source.acknowledge(page)
    moved = sorted(p.name for p in (tmp_path / "processed").iterdir())
    assert len(moved) == 2 and moved[1] == "r.hl7" and moved[0].startswith("r.") and moved[0].endswith(".hl7")
