"""Mapping tables: CSV rows ↔ versioned ConceptMaps, one per scope (a vendor profile or one source).

A scope's local codes live in ``urn:hub:code:<scope>:<element>``; a source's resources use
its own id as scope, and the normalizer also applies the tables of the source's vendor
profile (adapter name). Columns are documented in ``mappings/README.md``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from hub.coding.conceptmaps import EQUIVALENCES, STATUS_EXTENSION, target_status
from hub.errors import InvalidRequest
from hub.privacy import clip

COLUMNS = ("source_system", "source_code", "source_display", "target_system", "target_code", "target_display",
           "equivalence", "status", "comment", "target_unit")
REQUIRED = ("source_system", "source_code")
STATUSES = ("active", "draft", "retired")
LOCAL_PREFIX = "urn:hub:code:"
SCOPE_SYSTEM = "urn:hub:mapping-scope"
UNIT_EXTENSION = "urn:hub:extension:target-unit"
_SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ELEMENT = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


@dataclass(frozen=True)
class MappingRow:
    """One mapping: a local code → a standard code (or ``unmatched``: it has none)."""

    source_system: str
    source_code: str
    source_display: str = ""
    target_system: str = ""
    target_code: str = ""
    target_display: str = ""
    equivalence: str = "equivalent"
    status: str = "active"
    comment: str = ""
    #: Convert values to this UCUM unit (``canonical``: the target concept's unit); empty: no conversion.
    target_unit: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(source system, source code)."""
        return self.source_system, self.source_code


def require_scope(scope: str) -> str:
    """``scope`` when it is a usable scope name (a source id or an adapter name)."""
    if not _SCOPE.match(scope or ""):
        raise InvalidRequest(f"'{clip(scope or '', 40)}' is not a mapping scope (a source id or adapter name)")
    return scope


def source_scopes(source_id: str, adapter: str) -> list[str]:
    """The mapping scopes of a source, most specific first: its own table, then its vendor profile's."""
    return [source_id, adapter]


def local_system(scope: str, element: str) -> str:
    """The code system of ``element``'s local codes in ``scope``."""
    return f"{LOCAL_PREFIX}{scope}:{element}"


def split_local(system: str) -> tuple[str, str] | None:
    """(scope, element) of a local code system, or None for any other system."""
    if not system.startswith(LOCAL_PREFIX):
        return None
    scope, _, element = system[len(LOCAL_PREFIX):].rpartition(":")
    return (scope, element) if scope and element else None


def element_of(system: str) -> str:
    """The element of a local code system (``lab-item``…); any other system stands for itself."""
    local = split_local(system)
    return local[1] if local else system


def concept_map_id(scope: str) -> str:
    """The ConceptMap id of ``scope``'s table (FHIR ids allow no underscore)."""
    return "mapping-" + require_scope(scope).replace("_", "-")


def decode_table(raw: bytes) -> str:
    """A CSV file's text: UTF-8 (with or without BOM), or GB18030 as Chinese Excel saves "CSV"."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise InvalidRequest("The mapping table is neither UTF-8 nor GB18030 text; save it as CSV (UTF-8)") from None


def read_csv(text: str, scope: str) -> list[MappingRow]:
    """The rows of a mapping CSV for ``scope``; an error names the line and column of the first problem."""
    require_scope(scope)
    if "\x00" in text:
        raise InvalidRequest("The mapping table contains NUL characters: it is not a CSV text file")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidRequest(f"The mapping table lacks the column(s) {', '.join(missing)}; "
                             f"columns are {', '.join(COLUMNS)}")
    unknown = [c for c in reader.fieldnames or [] if c and c.strip() not in COLUMNS]
    if unknown:
        raise InvalidRequest(f"Unknown column(s) {', '.join(clip(c, 30) for c in unknown)}; "
                             f"columns are {', '.join(COLUMNS)}")
    rows: list[MappingRow] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    try:
        numbered = list(enumerate(reader, start=2))
    except csv.Error as exc:
        raise InvalidRequest(f"The mapping table is not valid CSV: {exc}") from None
    for line, raw in numbered:
        values = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(values.values()):
            continue
        row = _row(values, scope, line)
        key = (row.source_system, row.source_code, row.target_system, row.target_code)
        if key in seen:
            raise InvalidRequest(f"Line {line}: the same mapping as line {seen[key]}")
        seen[key] = line
        rows.append(row)
    return rows


def _row(values: dict[str, str], scope: str, line: int) -> MappingRow:
    source_system = values.get("source_system", "")
    if _ELEMENT.match(source_system):
        source_system = local_system(scope, source_system)
    elif ":" not in source_system:
        raise InvalidRequest(f"Line {line}, source_system: '{clip(source_system, 60)}' is neither an element name "
                             "(lab-item, diagnosis…) nor a code system URI")
    if not values.get("source_code"):
        raise InvalidRequest(f"Line {line}, source_code: empty")
    row = MappingRow(**{k: values.get(k, "") for k in COLUMNS if k != "source_system"},
                     source_system=source_system)
    row = replace(row, equivalence=row.equivalence or "equivalent", status=row.status or "active")
    if row.equivalence not in EQUIVALENCES:
        raise InvalidRequest(f"Line {line}, equivalence: '{clip(row.equivalence, 30)}' is not an R4 equivalence "
                             f"({', '.join(sorted(EQUIVALENCES))})")
    if row.status not in STATUSES:
        raise InvalidRequest(f"Line {line}, status: '{clip(row.status, 30)}' is not one of {', '.join(STATUSES)}")
    if row.equivalence != "unmatched" and not (row.target_system and row.target_code):
        raise InvalidRequest(f"Line {line}: target_system and target_code are needed (or equivalence unmatched)")
    return row


def write_csv(rows: list[MappingRow], scope: str) -> str:
    """``rows`` as a mapping CSV (local systems of ``scope`` written as their element name)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = asdict(row)
        local = split_local(row.source_system)
        if local and local[0] == scope:
            values["source_system"] = local[1]
        writer.writerow(values)
    return out.getvalue()


def to_concept_map(scope: str, rows: list[MappingRow], version: int, date: str) -> dict[str, Any]:
    """The ConceptMap of ``scope``'s table at ``version``."""
    groups: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in rows:
        elements = groups.setdefault((row.source_system, row.target_system), {})
        element = elements.setdefault(row.source_code, {"code": row.source_code, "target": []})
        if row.source_display:
            element["display"] = row.source_display
        target: dict[str, Any] = {}
        if row.target_code:
            target["code"] = row.target_code
        if row.target_display:
            target["display"] = row.target_display
        target["equivalence"] = row.equivalence
        if row.comment:
            target["comment"] = row.comment
        extensions = [{"url": STATUS_EXTENSION, "valueCode": row.status}]
        if row.target_unit:
            extensions.append({"url": UNIT_EXTENSION, "valueString": row.target_unit})
        target["extension"] = extensions
        element["target"].append(target)
    group_list = []
    for (source, target_system), elements in groups.items():
        group: dict[str, Any] = {"source": source}
        if target_system:
            group["target"] = target_system
        group["element"] = list(elements.values())
        group_list.append(group)
    return {
        "resourceType": "ConceptMap",
        "id": concept_map_id(scope),
        "url": f"urn:hub:mapping:{scope}",
        "identifier": {"system": SCOPE_SYSTEM, "value": scope},
        "version": str(version),
        "name": "LocalCodeMapping" + re.sub(r"[^A-Za-z0-9]", "", scope.title()),
        "title": f"{scope} 本地代码映射表",
        "status": "active",
        "date": date,
        "publisher": "区域医疗健康数据中心",
        "description": f"Local codes of {scope} mapped to national and international standards (version {version}).",
        "group": group_list,
    }


def from_concept_map(concept_map: dict[str, Any]) -> list[MappingRow]:
    """The rows of a stored mapping ConceptMap."""
    rows = []
    for group in concept_map.get("group") or []:
        for element in group.get("element") or []:
            for target in element.get("target") or []:
                unit = next((e.get("valueString", "") for e in target.get("extension") or []
                             if e.get("url") == UNIT_EXTENSION), "")
                rows.append(MappingRow(
                    source_system=group.get("source", ""), source_code=element.get("code", ""),
                    source_display=element.get("display", ""),
                    target_system=group.get("target", "") if target.get("code") else "",
                    target_code=target.get("code", ""), target_display=target.get("display", ""),
                    equivalence=target.get("equivalence", "equivalent"), status=target_status(target),
                    comment=target.get("comment", ""), target_unit=unit,
                ))
    return rows


def scope_of(concept_map: dict[str, Any]) -> str | None:
    """The scope of a mapping ConceptMap (None for other concept maps)."""
    identifier = concept_map.get("identifier") or {}
    return identifier.get("value") if identifier.get("system") == SCOPE_SYSTEM else None
