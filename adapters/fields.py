"""Turning raw source values into canonical record fields.

Source systems write dates as ``2024-03-01``, ``20240301``, ``2024/3/1`` or
``20240301083000`` (HL7), numbers with stray spaces, and ``''`` or ``'NULL'`` for
nothing. :func:`build_record` coerces a dict of canonical field names to the record's
declared types and raises :class:`RecordProblem` naming the field when it cannot.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import (
    ENCOUNTER_CLASSES,
    EXAM_MODALITIES,
    REPORT_STATUSES,
    CanonicalRecord,
    ChronicFollowUpRecord,
    DiagnosisRecord,
    EncounterRecord,
    ExamReportRecord,
    LabReportRecord,
    LabResultRecord,
    MedicationOrderRecord,
    PatientRecord,
    RecordProblem,
    ReferralRecord,
)

#: The record class of each kind.
RECORD_TYPES: dict[str, type] = {
    "Patient": PatientRecord,
    "Encounter": EncounterRecord,
    "Diagnosis": DiagnosisRecord,
    "LabReport": LabReportRecord,
    "ExamReport": ExamReportRecord,
    "MedicationOrder": MedicationOrderRecord,
    "Referral": ReferralRecord,
    "ChronicFollowUp": ChronicFollowUpRecord,
}
#: Values that mean "nothing" in source systems.
NULL_TEXTS = frozenset({"", "null", "NULL", "None", "-", "—", "无"})
#: Closed value sets checked on conversion (an unknown value is a quarantine reason).
ENUMS: dict[str, tuple[str, ...]] = {
    "sex": ("0", "1", "2", "9"),
    "encounter_class": ENCOUNTER_CLASSES,
    "modality": EXAM_MODALITIES,
    "status": REPORT_STATUSES + ("active", "completed", "stopped", "cancelled", "on-hold", "draft"),
    "rank": ("primary", "secondary"),
    "direction": ("up", "down"),
    "program": ("hypertension", "diabetes"),
    "abnormal_flag": ("H", "L", "N", "A", "HH", "LL"),
}
DEFAULT_ZONE = ZoneInfo("Asia/Shanghai")
_DATE_PATTERNS = (
    re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"),
    re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
    re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
)
_COMPACT_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?(?:\.\d+)?([+-]\d{4})?$")


def is_null(value: Any) -> bool:
    """Does a source value mean "nothing"?"""
    return value is None or (isinstance(value, str) and value.strip() in NULL_TEXTS)


def parse_date(value: Any) -> date:
    """A calendar date from the formats source systems use; ValueError otherwise."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if len(text) > 10 and text[10:11] in (" ", "T"):
        text = text[:10]  # a date-time where a date is expected: its date
    for pattern in _DATE_PATTERNS:
        found = pattern.match(text)
        if found:
            year, month, day = (int(part) for part in found.groups())
            return date(year, month, day)
    raise ValueError(f"'{text[:40]}' is not a date")


def parse_datetime(value: Any, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """An aware date-time (a source's local times are in ``zone``); ValueError otherwise."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time())
    else:
        text = str(value).strip()
        compact = _COMPACT_TIME.match(text)
        if compact:
            year, month, day, hour, minute, second, offset = compact.groups()
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
            if offset:
                moment = datetime.strptime(moment.strftime("%Y%m%d%H%M%S") + offset, "%Y%m%d%H%M%S%z")
        else:
            try:
                moment = datetime.fromisoformat(text.replace("/", "-"))
            except ValueError:
                moment = datetime.combine(parse_date(text), time())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _number(value: Any, kind: type) -> int | float:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"'{str(value)[:40]}' is not a number") from None
    if kind is int:
        if number != number.to_integral_value():
            raise ValueError(f"'{value}' is not a whole number")
        return int(number)
    return float(number)


class _Field(typing.NamedTuple):
    base: type
    #: No value means the row is bad (quarantine).
    required: bool
    #: The dataclass gives a default (left out of the constructor when the value is None).
    has_default: bool


@cache
def _field_types(record_type: type) -> dict[str, _Field]:
    """Each field's base type, whether it is required, and whether it has a default."""
    hints = typing.get_type_hints(record_type)
    found: dict[str, _Field] = {}
    for item in dataclasses.fields(record_type):
        hint = hints[item.name]
        optional = type(None) in typing.get_args(hint)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if args and typing.get_origin(hint) is not tuple else hint
        has_default = item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING
        found[item.name] = _Field(base, not optional and not has_default, has_default)
    return found


def coerce(record_type: type, name: str, value: Any, zone: ZoneInfo = DEFAULT_ZONE) -> Any:
    """One field's value in its declared type (None for a null text); RecordProblem otherwise."""
    base, required, _default = _field_types(record_type)[name]
    if is_null(value):
        if required:
            raise RecordProblem("required value is missing", field_name=name)
        return None
    try:
        if base is datetime:
            return parse_datetime(value, zone)
        if base is date:
            return parse_date(value)
        if base in (int, float):
            return _number(value, base)
        if typing.get_origin(base) is tuple:
            return tuple(value)
        text = str(value).strip()
        if isinstance(value, float) and value.is_integer():
            text = str(int(value))
        allowed = ENUMS.get(name)
        if allowed is not None and text not in allowed:
            raise ValueError(f"'{text[:40]}' is not one of {', '.join(allowed)}")
        return text
    except ValueError as exc:
        raise RecordProblem(str(exc), field_name=name) from None


def _build(record_type: type, label: str, values: Mapping[str, Any], zone: ZoneInfo) -> Any:
    known = _field_types(record_type)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise RecordProblem(f"fields {', '.join(unknown)} are not fields of {label}")
    arguments = {name: coerce(record_type, name, values.get(name), zone) for name in known if name != "results"}
    arguments = {name: value for name, value in arguments.items() if value is not None or not known[name].has_default}
    if "results" in values:
        arguments["results"] = tuple(values["results"])
    return record_type(**arguments)


def build_record(kind: str, values: Mapping[str, Any], zone: ZoneInfo = DEFAULT_ZONE) -> CanonicalRecord:
    """The canonical record of ``kind`` from canonical field names → raw values."""
    record_type = RECORD_TYPES.get(kind)
    if record_type is None:
        raise RecordProblem(f"unknown record kind '{kind}'")
    return _build(record_type, kind, values, zone)  # type: ignore[no-any-return]


def build_lab_result(values: Mapping[str, Any], zone: ZoneInfo = DEFAULT_ZONE) -> LabResultRecord:
    """One lab result item from canonical field names → raw values."""
    return _build(LabResultRecord, "a lab result", values, zone)  # type: ignore[no-any-return]


def json_value(value: Any) -> Any:
    """A raw database value in a JSON-able form (kept as a quarantined row)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
