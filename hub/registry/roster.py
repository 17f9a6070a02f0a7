"""The consortium roster: region → consortium (医共体/医疗集团) → zone (片区) → institution.

A roster file (YAML or CSV) lists the organizations of a region, one per entry/row, with the
columns ``id,name,parent,kind,role,level,uscc,license,alias``. :func:`load_roster` checks it
and builds FHIR R4 ``Organization`` JSON (no pydantic on the way; the service validates on
write); :func:`apply_roster` writes them with PUT semantics, parents first, so loading the
same roster again creates no new versions.

Codes and identifiers (all ``urn:hub:`` URIs are the hub's own, not published code systems):

* ``Organization.identifier``: ``urn:hub:identifier:uscc`` — 统一社会信用代码 (GB 32100-2015,
  checked); ``urn:hub:identifier:medical-institution-license`` — 医疗机构执业许可证登记号.
* ``Organization.type``: ``urn:hub:organization-kind`` region/consortium/zone/institution;
  for institutions also ``urn:hub:consortium-role`` lead/member/collaborating
  (牵头医院/成员单位/协作单位), ``urn:hub:institution-level`` tertiary/secondary/primary/chc/township
  (三级医院/二级医院/一级医院/社区卫生服务中心/乡镇卫生院) and HL7 organization-type ``prov``.
* ``Organization.partOf``: the parent (a zone's consortium, an institution's zone).

Usage::

    with database.fhir_service(write=True) as service:
        counts = apply_roster(service, load_roster(Path("hub/samples/kunshan-roster.yaml")))
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.errors import InvalidRequest, Issue
from hub.fhir.service import FhirService
from hub.store.organizations import KIND_SYSTEM, LEVEL_SYSTEM, ROLE_SYSTEM, parent_of

USCC_SYSTEM = "urn:hub:identifier:uscc"
LICENSE_SYSTEM = "urn:hub:identifier:medical-institution-license"
HL7_ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

#: Codes → Chinese displays. Kinds in tree order (a parent's kind never comes after its child's).
KINDS = {"region": "区域", "consortium": "医共体", "zone": "片区", "institution": "医疗卫生机构"}
ROLES = {"lead": "牵头医院", "member": "成员单位", "collaborating": "协作单位"}
LEVELS = {"tertiary": "三级医院", "secondary": "二级医院", "primary": "一级医院", "chc": "社区卫生服务中心",
          "township": "乡镇卫生院"}
#: Other spellings accepted in roster files (the Chinese displays are accepted too).
_KIND_WORDS = {"区域": "region", "医共体": "consortium", "医疗集团": "consortium", "片区": "zone",
               "机构": "institution", "医疗机构": "institution", "医疗卫生机构": "institution"}
_ROLE_WORDS = {v: k for k, v in ROLES.items()} | {"牵头单位": "lead"}
_LEVEL_WORDS = {v: k for k, v in LEVELS.items()} | {"卫生院": "township", "镇卫生院": "township"}
_KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}

#: The columns of a roster (CSV header, YAML keys); ``id``, ``name`` and ``kind`` are required.
COLUMNS = ("id", "name", "parent", "kind", "role", "level", "uscc", "license", "alias")

#: GB 32100-2015: the 31 characters of a code (no I, O, Z, S, V) and the weights of positions 1-17.
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: 医疗机构执业许可证登记号: 22 letters and digits (no check character is defined for it).
_LICENSE = re.compile(r"^[0-9A-Z]{22}$")
_ALIAS_SEPARATORS = re.compile(r"[|;；]")
_MAX_PROBLEMS_SHOWN = 20


def uscc_check_character(first17: str) -> str:
    """The GB 32100-2015 check character (position 18) of the first 17 characters of a code."""
    if len(first17) != 17 or any(ch not in USCC_CHARSET for ch in first17):
        raise ValueError("a USCC body is 17 characters of " + USCC_CHARSET)
    total = sum(USCC_CHARSET.index(ch) * weight for ch, weight in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    """Whether ``code`` is a well-formed 统一社会信用代码 with the right GB 32100-2015 check character.

    The shape is 2 characters (registration authority, entity category), a 6-digit area code and
    10 characters (the organization code and the check), all from :data:`USCC_CHARSET`.
    """
    return bool(_USCC_SHAPE.match(code)) and uscc_check_character(code[:17]) == code[17]


@dataclass(frozen=True)
class _Row:
    label: str  # "row 5" (CSV line) or "entry 3" (YAML list position)
    id: str
    name: str
    parent: str
    kind: str
    role: str
    level: str
    uscc: str
    license: str
    aliases: tuple[str, ...]


# -- reading -------------------------------------------------------------------------------------


def load_roster(path: Path, known_ids: Iterable[str] = frozenset()) -> list[dict[str, Any]]:
    """The Organizations of the roster file ``path`` (``.yaml``/``.yml`` or ``.csv``), parents first.

    ``known_ids`` are Organization ids that already exist (in the store) and may be named as a
    parent without being defined in the file. Raises :class:`~hub.errors.InvalidRequest` listing
    every problem (unknown parent, duplicate id, cycle, bad USCC, unknown kind/role/level, bad id),
    each naming its row and id.
    """
    suffix = path.suffix.lower()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"Cannot read the roster {path}: {exc.strerror or exc}") from None
    if suffix in (".yaml", ".yml"):
        rows, problems = _yaml_rows(raw, path.name)
    elif suffix == ".csv":
        rows, problems = _csv_rows(raw, path.name)
    else:
        raise InvalidRequest(f"Roster {path.name}: unsupported file type '{suffix}' (use .yaml, .yml or .csv)")
    problems += _check(rows, frozenset(known_ids))
    if problems:
        shown = problems[:_MAX_PROBLEMS_SHOWN]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise InvalidRequest(f"Roster {path.name}: {problems[0]}{more}",
                             issues=[Issue("invalid", f"Roster {path.name}: {p}") for p in shown])
    by_id = {row.id: row for row in rows}
    order = parent_first_ids({row.id: row.parent or None for row in rows})
    return [organization(by_id[i]) for i in order]


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8-sig")  # with or without a byte-order mark
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"Roster {name} is not UTF-8 text (byte {exc.start})") from None


def _yaml_rows(raw: bytes, name: str) -> tuple[list[_Row], list[str]]:
    try:
        data = yaml.safe_load(_decode(raw, name))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InvalidRequest(f"Roster {name} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") from None
    if isinstance(data, dict):
        extra = sorted(str(k) for k in data if k != "organizations")
        if extra:
            raise InvalidRequest(f"Roster {name}: unknown top-level key(s) {extra}; expected 'organizations'")
        data = data.get("organizations")
    if not isinstance(data, list):
        raise InvalidRequest(f"Roster {name}: expected a list of organizations (or 'organizations:' holding one)")
    rows: list[_Row] = []
    problems: list[str] = []
    for number, entry in enumerate(data, start=1):
        label = f"entry {number}"
        if not isinstance(entry, dict):
            problems.append(f"{label}: expected a mapping of {', '.join(COLUMNS)}")
            continue
        rows.append(_row(label, entry, problems))
    return rows, problems


def _csv_rows(raw: bytes, name: str) -> tuple[list[_Row], list[str]]:
    reader = csv.DictReader(io.StringIO(_decode(raw, name), newline=""))
    header = [(column or "").strip() for column in reader.fieldnames or ()]
    missing = [c for c in ("id", "name", "kind") if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        raise InvalidRequest(f"Roster {name}: the CSV header must name the columns {','.join(COLUMNS)}"
                             + (f"; missing {missing}" if missing else "") + (f"; unknown {unknown}" if unknown else ""))
    reader.fieldnames = header
    rows: list[_Row] = []
    problems: list[str] = []
    for record in reader:
        label = f"row {reader.line_num}"
        if None in record:
            problems.append(f"{label}: more fields than the header has columns")
        values = {k: v for k, v in record.items() if k is not None}
        if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
            continue  # a blank line
        rows.append(_row(label, values, problems))
    return rows, problems


def _row(label: str, entry: Mapping[Any, Any], problems: list[str]) -> _Row:
    unknown = sorted(str(k) for k in entry if k not in COLUMNS)
    if unknown:
        problems.append(f"{label}: unknown field(s) {unknown}; the fields are {', '.join(COLUMNS)}")

    def text(field: str) -> str:
        value = entry.get(field)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            problems.append(f"{label}: '{field}' must be text (quote it)")
            return ""
        return str(value).strip()

    alias = entry.get("alias")
    if isinstance(alias, list):
        aliases = tuple(str(a).strip() for a in alias if a is not None and str(a).strip())
    else:
        aliases = tuple(a.strip() for a in _ALIAS_SEPARATORS.split(text("alias")) if a.strip())
    return _Row(label, text("id"), text("name"), text("parent"), text("kind"), text("role"), text("level"),
                text("uscc").upper(), text("license").upper(), aliases)


# -- checking ------------------------------------------------------------------------------------


def _code(value: str, words: Mapping[str, str], codes: Mapping[str, str]) -> str | None:
    """The code of ``value`` (a code, any case, or a Chinese word); None if unknown."""
    if value.lower() in codes:
        return value.lower()
    return words.get(value)


def _check(rows: list[_Row], known_ids: frozenset[str]) -> list[str]:
    problems: list[str] = []
    first_row: dict[str, _Row] = {}
    seen_codes: dict[tuple[str, str], _Row] = {}
    for row in rows:
        where = f"{row.label} ({row.id or 'no id'})"
        if not row.id:
            problems.append(f"{where}: 'id' is required")
        elif not _ID.match(row.id):
            problems.append(f"{where}: id '{row.id}' is not a FHIR id (1-64 characters of A-Z a-z 0-9 - .)")
        elif row.id in first_row:
            problems.append(f"{where}: duplicate id '{row.id}' (first defined at {first_row[row.id].label})")
        else:
            first_row[row.id] = row
        if not row.name:
            problems.append(f"{where}: 'name' is required")
        problems += _check_codes(row, where)
        for system, value in (("统一社会信用代码", row.uscc), ("医疗机构登记号", row.license)):
            if not value:
                continue
            if (system, value) in seen_codes:
                problems.append(f"{where}: {system} {value} is also given to {seen_codes[system, value].id}")
            else:
                seen_codes[system, value] = row
    problems += _check_parents(rows, first_row, known_ids)
    return problems


def _check_codes(row: _Row, where: str) -> list[str]:
    problems: list[str] = []
    kind = _code(row.kind, _KIND_WORDS, KINDS)
    if kind is None:
        problems.append(f"{where}: unknown kind '{row.kind}' (one of {', '.join(KINDS)})")
    if kind == "institution":
        if _code(row.role, _ROLE_WORDS, ROLES) is None:
            problems.append(f"{where}: unknown role '{row.role}' (one of {', '.join(ROLES)}: 牵头医院/成员单位/协作单位)")
        if _code(row.level, _LEVEL_WORDS, LEVELS) is None:
            problems.append(f"{where}: unknown level '{row.level}' (one of {', '.join(LEVELS)})")
        if not row.uscc:
            problems.append(f"{where}: an institution needs its 统一社会信用代码 (uscc)")
    elif kind is not None:
        for field, value in (("role", row.role), ("level", row.level)):
            if value:
                problems.append(f"{where}: only institutions have a {field} (this is a {kind})")
    if row.uscc:
        if not _USCC_SHAPE.match(row.uscc):
            problems.append(f"{where}: 统一社会信用代码 {row.uscc} is not 18 characters of GB 32100-2015 "
                            f"({USCC_CHARSET}; positions 3-8 digits)")
        elif not uscc_valid(row.uscc):
            problems.append(f"{where}: 统一社会信用代码 {row.uscc} has a wrong check character "
                            f"'{row.uscc[17]}' (GB 32100-2015 gives '{uscc_check_character(row.uscc[:17])}')")
    if row.license and not _LICENSE.match(row.license):
        problems.append(f"{where}: 医疗机构登记号 {row.license} is not 22 letters and digits")
    return problems


def _check_parents(rows: list[_Row], defined: dict[str, _Row], known_ids: frozenset[str]) -> list[str]:
    problems: list[str] = []
    for row in rows:
        if defined.get(row.id) is not row:
            continue  # a row with a bad or duplicate id is already reported
        where = f"{row.label} ({row.id})"
        kind = _code(row.kind, _KIND_WORDS, KINDS)
        if not row.parent:
            if kind in ("zone", "institution"):
                problems.append(f"{where}: a {kind} needs a parent")
            continue
        parent = defined.get(row.parent)
        if parent is None:
            if row.parent not in known_ids:
                problems.append(f"{where}: unknown parent '{row.parent}' (not in the roster nor already stored)")
            continue
        parent_kind = _code(parent.kind, _KIND_WORDS, KINDS)
        if kind is not None and parent_kind is not None and _KIND_RANK[parent_kind] > _KIND_RANK[kind]:
            problems.append(f"{where}: a {kind} cannot be part of {parent.id}, a {parent_kind}")
    cycles = _cycles({i: r.parent for i, r in defined.items() if r.parent in defined})
    for cycle in cycles:
        problems.append(f"{defined[cycle[0]].label} ({cycle[0]}): partOf cycle {' → '.join([*cycle, cycle[0]])}")
    return problems


def _cycles(parent_of: Mapping[str, str]) -> list[list[str]]:
    """Each cycle of the ``child → parent`` map once, starting at its smallest id."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    found: list[list[str]] = []
    for start in parent_of:
        path: list[str] = []
        node: str | None = start
        while node is not None and state.get(node) is None:
            state[node] = 1
            path.append(node)
            node = parent_of.get(node)
        if node is not None and state.get(node) == 1:
            cycle = path[path.index(node):]
            smallest = cycle.index(min(cycle))
            found.append(cycle[smallest:] + cycle[:smallest])
        for visited in path:
            state[visited] = 2
    return found


def parent_first_ids(parent_of: Mapping[str, str | None]) -> list[str]:
    """The ids of ``parent_of`` (id → parent id) ordered so each parent in it comes before its children.

    Ids keep their given order otherwise. Raises InvalidRequest on a cycle.
    """
    cycles = _cycles({child: parent for child, parent in parent_of.items() if parent in parent_of})
    if cycles:
        raise InvalidRequest(f"Organization partOf cycle {' → '.join([*cycles[0], cycles[0][0]])}")
    order: list[str] = []
    placed: set[str] = set()
    for start in parent_of:
        chain: list[str] = []
        node: str | None = start
        while node is not None and node in parent_of and node not in placed:
            chain.append(node)
            node = parent_of[node]
        for ident in reversed(chain):
            placed.add(ident)
            order.append(ident)
    return order


# -- building and writing ------------------------------------------------------------------------


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def organization(row: _Row) -> dict[str, Any]:
    """The FHIR R4 Organization JSON of a checked roster row."""
    kind = _code(row.kind, _KIND_WORDS, KINDS) or row.kind
    resource: dict[str, Any] = {"resourceType": "Organization", "id": row.id}
    identifiers = []
    if row.uscc:
        identifiers.append({"use": "official", "type": {"text": "统一社会信用代码"}, "system": USCC_SYSTEM,
                            "value": row.uscc})
    if row.license:
        identifiers.append({"use": "official", "type": {"text": "医疗机构执业许可证登记号"}, "system": LICENSE_SYSTEM,
                            "value": row.license})
    if identifiers:
        resource["identifier"] = identifiers
    resource["active"] = True
    types = [_concept(KIND_SYSTEM, kind, KINDS[kind])]
    if kind == "institution":
        role = _code(row.role, _ROLE_WORDS, ROLES) or row.role
        level = _code(row.level, _LEVEL_WORDS, LEVELS) or row.level
        types += [
            {"coding": [{"system": HL7_ORGANIZATION_TYPE, "code": "prov", "display": "Healthcare Provider"}]},
            _concept(ROLE_SYSTEM, role, ROLES[role]),
            _concept(LEVEL_SYSTEM, level, LEVELS[level]),
        ]
    resource["type"] = types
    resource["name"] = row.name
    if row.aliases:
        resource["alias"] = list(row.aliases)
    if row.parent:
        resource["partOf"] = {"reference": f"Organization/{row.parent}"}
    return resource


def apply_roster(service: FhirService, organizations: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Write ``organizations`` with ``PUT Organization/[id]``, parents first, in the service's unit of work.

    Returns how many were created, updated, and unchanged (same content: no new version).
    """
    by_id: dict[str, Mapping[str, Any]] = {}
    for resource in organizations:
        ident = resource.get("id")
        if not isinstance(ident, str) or not ident:
            raise InvalidRequest("Every Organization of a roster needs an id")
        if ident in by_id:
            raise InvalidRequest(f"Organization {ident} appears twice in the roster")
        by_id[ident] = resource
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for ident in parent_first_ids({i: parent_of(r) for i, r in by_id.items()}):
        outcome = service.update("Organization", ident, dict(by_id[ident]))
        if outcome.status == 201:
            counts["created"] += 1
        elif outcome.message is not None and outcome.message.startswith("No change"):
            counts["unchanged"] += 1
        else:
            counts["updated"] += 1
    return counts
