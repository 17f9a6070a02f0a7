"""Quality-control (室间质评) records as the API and CSV files give them, checked against the rules in force."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from hub.errors import InvalidRequest
from hub.recognition.rules import Rules
from hub.store.recognition import EqaRecord

_MAX_YEAR_SPAN = (2000, 2100)


def _eqa_record(entry: Any, number: int, rules: Rules) -> EqaRecord:
    where = f"record {number}"
    if not isinstance(entry, dict):
        raise InvalidRequest(f"{where}: must be an object with institution, item, year, passed")
    institution, item_id = str(entry.get("institution") or ""), str(entry.get("item") or "")
    year, passed = entry.get("year"), entry.get("passed")
    if institution not in rules.institutions:
        raise InvalidRequest(f"{where}: unknown institution '{institution}' (an Organization id)")
    if item_id not in rules.catalogue.items:
        raise InvalidRequest(f"{where}: '{item_id}' is not an item of the catalogue in force")
    if rules.catalogue.items[item_id].rule != "eqa":
        raise InvalidRequest(f"{where}: item '{item_id}' is qualified by hospital level, not by 室间质评")
    if not isinstance(year, int) or isinstance(year, bool) or not _MAX_YEAR_SPAN[0] <= year <= _MAX_YEAR_SPAN[1]:
        raise InvalidRequest(f"{where}: year must be a year like 2026")
    if not isinstance(passed, bool):
        raise InvalidRequest(f"{where}: passed must be true or false")
    scheme, certificate = str(entry.get("scheme") or ""), str(entry.get("certificate") or "")
    if len(scheme) > 200 or len(certificate) > 200:
        raise InvalidRequest(f"{where}: scheme and certificate are limited to 200 characters")
    return EqaRecord(institution, item_id, year, passed, scheme, certificate)


def eqa_records(entries: Sequence[Any], rules: Rules) -> list[EqaRecord]:
    """The checked records (every one for a known institution and an ``eqa`` item; no key twice)."""
    records = [_eqa_record(entry, number, rules) for number, entry in enumerate(entries, start=1)]
    seen: dict[tuple[str, str, int], int] = {}
    for number, record in enumerate(records, start=1):
        key = (record.institution, record.item_id, record.year)
        if key in seen:
            raise InvalidRequest(f"records {seen[key]} and {number} are both for {record.institution}, "
                                 f"{record.item_id}, {record.year}")
        seen[key] = number
    return records


EQA_COLUMNS = ("institution", "item", "year", "passed", "scheme", "certificate")
_TRUE, _FALSE = {"true", "1", "yes", "pass", "passed", "合格", "通过"}, {"false", "0", "no", "fail", "failed", "不合格",
                                                                      "未通过"}


def read_eqa_csv(raw: bytes) -> list[dict[str, Any]]:
    """Quality-control records from CSV (columns institution,item,year,passed[,scheme,certificate])."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("The quality-control file must be UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in EQA_COLUMNS[:4] if c not in (reader.fieldnames or ())]
    if missing:
        raise InvalidRequest(f"The quality-control file lacks the column(s) {', '.join(missing)} "
                             f"(columns: {','.join(EQA_COLUMNS)})")
    out = []
    for line, row in enumerate(reader, start=2):
        passed = (row.get("passed") or "").strip().lower()
        year = (row.get("year") or "").strip()
        if passed not in _TRUE | _FALSE or not year.isdigit():
            raise InvalidRequest(f"line {line}: year must be a year and passed true or false")
        out.append({"institution": (row.get("institution") or "").strip(), "item": (row.get("item") or "").strip(),
                    "year": int(year), "passed": passed in _TRUE, "scheme": (row.get("scheme") or "").strip(),
                    "certificate": (row.get("certificate") or "").strip()})
    return out
