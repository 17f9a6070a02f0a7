"""HL7 v2.x ``ORU^R01`` lab results: a message → raw source rows → canonical lab reports.

:func:`parse_oru` splits one message into one :class:`SourceRow` per ORDER_OBSERVATION
(an OBR and the OBX results that follow it), keeping what conversion needs as plain
strings so that a quarantined row can be converted again later. :func:`convert` turns
a row into a :class:`LabReportRecord`, raising :class:`RecordProblem` naming the field
(and the HL7 field it came from) when a value cannot be used.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import hl7

from adapters.base import LabReportRecord, LabResultRecord, Position, RecordProblem, SourceRow
from adapters.fields import DEFAULT_ZONE, build_lab_result, build_record, is_null
from adapters.hl7v2.text import hl7_datetime, normalise

#: HL7 table 0123 (result status, OBR-25) → canonical report status (HL7 v2-to-FHIR mapping).
REPORT_STATUS = (
    dict.fromkeys("OIS", "registered")
    | dict.fromkeys("AR", "partial")
    | {"P": "preliminary", "F": "final", "C": "corrected", "X": "cancelled"}
)
#: HL7 table 0078 (OBX-8) flags the canonical record knows; ``AA`` (very abnormal) is kept as ``A``.
ABNORMAL_FLAGS = {"H": "H", "L": "L", "N": "N", "A": "A", "HH": "HH", "LL": "LL", "AA": "A"}
#: OBX-11 statuses of a result that has no value to report (pending, cannot be obtained, deleted, wrong).
NO_VALUE_STATUSES = frozenset({"I", "X", "D", "W"})
_CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF", "IS", "ID"})
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def _parse(message: str) -> hl7.Message:
    text = normalise(message)
    if not text.startswith("MSH") or len(text) < 8:
        raise RecordProblem("not an HL7 v2 message: it does not start with an MSH segment")
    try:
        parsed = hl7.parse(text)
        parsed.segment("MSH")
    except Exception as exc:  # python-hl7 raises assorted errors (IndexError, ParseException…) on bad text
        raise RecordProblem(f"the HL7 message cannot be parsed ({type(exc).__name__})") from None
    return parsed


def _get(segment: Any, field: int, component: int = 1, sub: int = 1, repeat: int = 1) -> str:
    """One value of a segment ('' when absent), unescaped and stripped."""
    if segment is None:
        return ""
    try:
        return str(segment.extract_field(None, field, repeat, component, sub)).strip()
    except (IndexError, KeyError, TypeError, ValueError):
        return ""


def _width(part: Any) -> int:
    return len(part) if isinstance(part, hl7.Repetition) else 1


def _value(obx: Any) -> str:
    """OBX-5 as text: coded → its text (or code), SN → ``<5`` / ``1:128``, repetitions one per line."""
    if len(obx) <= 5:
        return ""
    kind = _get(obx, 2).upper()
    parts = []
    for number in range(1, len(obx(5)) + 1):
        components = [_get(obx, 5, c, 1, number) for c in range(1, _width(obx(5)(number)) + 1)]
        if kind in _CODED_TYPES:
            text = components[1] if len(components) > 1 and components[1] else components[0]
        elif kind == "SN":
            text = "".join(components[:4])
        else:
            text = "^".join(components).rstrip("^")
        parts.append(text)
    return "\n".join(part for part in parts if part)


def _name(pid: Any) -> str:
    family, given = _get(pid, 5, 1), _get(pid, 5, 2)
    joiner = "" if _CJK.search(family + given) else " "
    return joiner.join(part for part in (family, given) if part)


def _groups(parsed: hl7.Message) -> list[dict[str, Any]]:
    """ORDER_OBSERVATION groups: each OBR with its OBX results, and the PID/PV1 before it."""
    pid = pv1 = None
    groups: list[dict[str, Any]] = []
    for segment in parsed:
        name = str(segment[0]).strip()
        current = groups[-1] if groups else None
        if name == "PID":
            pid, pv1 = segment, None
        elif name == "PV1":
            pv1 = segment
        elif name == "OBR":
            groups.append({"pid": pid, "pv1": pv1, "obr": segment, "obx": [], "spm": None, "specimen_obx": False})
        elif name == "SPM" and current is not None:
            current["spm"] = current["spm"] or segment
            # OBX after an SPM describe the specimen (v2.5 SPECIMEN group), unless no result came before it.
            current["specimen_obx"] = current["specimen_obx"] or bool(current["obx"])
        elif name == "OBX" and current is not None and not current["specimen_obx"]:
            current["obx"].append(segment)
    return groups


def _result(obx: Any) -> dict[str, str]:
    return {
        "set_id": _get(obx, 1),
        "value_type": _get(obx, 2),
        "code": _get(obx, 3, 1),
        "text": _get(obx, 3, 2),
        "value": _value(obx),
        "units": _get(obx, 6, 1) or _get(obx, 6, 2),
        "reference_range": _get(obx, 7),
        "abnormal_flags": _get(obx, 8),
        "result_status": _get(obx, 11),
    }


def parse_oru(message: str) -> list[SourceRow]:
    """The LabReport rows of one ``ORU^R01`` message; :class:`RecordProblem` if it is not one."""
    parsed = _parse(message)
    msh = parsed.segment("MSH")
    event = (_get(msh, 9, 1).upper(), _get(msh, 9, 2).upper())
    if event != ("ORU", "R01"):
        shown = "^".join(part for part in event if part) or "of no type"
        raise RecordProblem(f"the message is {shown[:20]}, not ORU^R01 (MSH-9)")
    header = {
        "sending_application": _get(msh, 3),
        "sending_facility": _get(msh, 4),
        "control_id": _get(msh, 10),
        "time": _get(msh, 7),
        "version": _get(msh, 12),
    }
    groups = _groups(parsed)
    if not groups:
        raise RecordProblem("the ORU^R01 message holds no OBR segment")
    rows: list[SourceRow] = []
    seen: set[str] = set()
    for number, group in enumerate(groups, start=1):
        obr, pid, spm = group["obr"], group["pid"], group["spm"]
        order = {
            "set_id": _get(obr, 1),
            "placer_order": _get(obr, 2),
            "filler_order": _get(obr, 3),
            "service_code": _get(obr, 4, 1),
            "service_text": _get(obr, 4, 2),
            "observation_time": _get(obr, 7),
            "report_time": _get(obr, 22),
            "result_status": _get(obr, 25),
            "specimen": _get(obr, 15, 1, 2) or _get(obr, 15, 1) or _get(spm, 4, 2) or _get(spm, 4, 1),
        }
        key = _key(order, header["control_id"], number, seen)
        raw = {
            "msh": header,
            "pid": {
                "patient_id": _get(pid, 3) or _get(pid, 2),
                "name": _name(pid),
                "birth": _get(pid, 7),
                "sex": _get(pid, 8),
            },
            "pv1": {"visit_number": _get(group["pv1"], 19)},
            "obr": order,
            "results": [_result(obx) for obx in group["obx"]],
        }
        rows.append(SourceRow("LabReport", key, Position(order["report_time"] or header["time"], key), raw))
    return rows


def _key(order: Mapping[str, str], control_id: str, number: int, seen: set[str]) -> str:
    """Filler order number (OBR-3), else placer (OBR-2), else MSH-10 + OBR set id; unique in the message."""
    key = order["filler_order"] or order["placer_order"]
    if not key:
        if not control_id:
            raise RecordProblem(f"OBR {number} has no order number (OBR-3, OBR-2) and MSH-10 is empty")
        key = f"{control_id}-{order['set_id'] or number}"
    for candidate in (key, f"{key}-{order['service_code']}", f"{key}-{number}"):
        if candidate not in seen and candidate != f"{key}-":
            seen.add(candidate)
            return candidate
    raise RecordProblem(f"OBR {number} repeats the order number of another OBR")


# -- conversion -------------------------------------------------------------


def _time(text: Any, where: str, field_name: str, zone: ZoneInfo) -> datetime | None:
    """An HL7 date-time field as an aware date-time (None when empty); RecordProblem naming the field."""
    text = str(text or "").strip()
    if not text:
        return None
    try:
        return hl7_datetime(text, zone)
    except ValueError:
        raise RecordProblem(
            f"{where} '{text[:40]}' is not an HL7 date-time (YYYYMMDDHHMM[SS][.S][+ZZZZ])", field_name=field_name
        ) from None


def _required(value: Any, where: str, field_name: str) -> Any:
    if is_null(value):
        raise RecordProblem(f"required value is missing ({where})", field_name=field_name)
    return value


def _status(code: Any, results: Iterable[Mapping[str, Any]]) -> str | None:
    """OBR-25 by table 0123; when empty, the OBX-11 status all results share (F, C or P), else None."""
    code = str(code or "").strip().upper()
    if not code:
        found = {str(result.get("result_status") or "").strip().upper() for result in results}
        return REPORT_STATUS[found.pop()] if len(found) == 1 and found <= {"F", "C", "P"} else None
    if code not in REPORT_STATUS:
        raise RecordProblem(f"OBR-25 '{code[:10]}' is not a result status of HL7 table 0123", field_name="status")
    return REPORT_STATUS[code]


def _flag(text: Any, where: str) -> str | None:
    if is_null(text):
        return None
    flag = str(text).strip().upper()
    if flag not in ABNORMAL_FLAGS:
        raise RecordProblem(
            f"{where}: OBX-8 '{flag[:10]}' is not one of H, L, N, A, HH, LL, AA", field_name="abnormal_flag"
        )
    return ABNORMAL_FLAGS[flag]


def _results(report_key: str, results: Iterable[Mapping[str, Any]]) -> list[LabResultRecord]:
    items = []
    for number, obx in enumerate(results, start=1):
        value = str(obx.get("value") or "")
        if is_null(value) and str(obx.get("result_status") or "").strip().upper() in NO_VALUE_STATUSES:
            continue
        set_id = str(obx.get("set_id") or number)
        where = f"OBX {set_id}"
        values = {
            "key": f"{report_key}-{set_id}",
            "item_code": obx.get("code") or obx.get("text"),
            "item_name": obx.get("text") or obx.get("code"),
            "value": value,
            "unit": obx.get("units"),
            "reference_range": obx.get("reference_range"),
            "abnormal_flag": _flag(obx.get("abnormal_flags"), where),
        }
        try:
            items.append(build_lab_result(values))
        except RecordProblem as problem:
            name = problem.field_name
            detail = problem.reason.removeprefix(f"{name}: ") if name else problem.reason
            raise RecordProblem(f"{where}: {detail}", field_name=name) from None
    return items


def convert(row: SourceRow, institution: str | None = None, zone: ZoneInfo = DEFAULT_ZONE) -> LabReportRecord:
    """The lab report of a row made by :func:`parse_oru` (or of a file that did not parse: its reason).

    ``institution`` is the performing institution's Organization id (None: the source's);
    times without an offset are local times of ``zone``.
    """
    raw = row.raw
    if "msh" not in raw:
        return _convert_unparsed(raw, institution, zone)
    msh, pid, pv1, obr = (raw.get(part) or {} for part in ("msh", "pid", "pv1", "obr"))
    results = raw.get("results") or ()
    report_time = _time(obr.get("report_time"), "OBR-22", "report_time", zone)
    report_time = report_time or _time(msh.get("time"), "MSH-7", "report_time", zone)
    values = {
        "key": row.key,
        "updated_at": report_time,
        "patient_key": _required(pid.get("patient_id"), "PID-3", "patient_key"),
        "report_name": _required(obr.get("service_text") or obr.get("service_code"), "OBR-4", "report_name"),
        "report_code": obr.get("service_code"),
        "report_time": _required(report_time, "OBR-22 and MSH-7 are empty", "report_time"),
        "collected_at": _time(obr.get("observation_time"), "OBR-7", "collected_at", zone),
        "status": _status(obr.get("result_status"), results),
        "specimen": obr.get("specimen"),
        "encounter_key": pv1.get("visit_number"),
        "performing_institution": institution,
        "results": _results(row.key, results),
    }
    return cast(LabReportRecord, build_record("LabReport", values, zone))


def _convert_unparsed(raw: Mapping[str, Any], institution: str | None, zone: ZoneInfo) -> LabReportRecord:
    """A row kept for a message that did not parse: parse it again (raising its reason)."""
    if raw.get("problem"):
        raise RecordProblem(str(raw["problem"]))
    rows = parse_oru(str(raw.get("message") or ""))
    if len(rows) != 1:
        raise RecordProblem(f"the message now holds {len(rows)} reports: drop it again to read them one by one")
    return convert(rows[0], institution, zone)
