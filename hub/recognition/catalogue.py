"""The recognition catalogue (互认项目目录) as data: items, validity windows, scope, qualification, price.

A catalogue is a YAML (or JSON) document::

    version: "2026.12"
    name: 昆山市紧密型医共体检查检验结果互认项目目录
    defaults: {validity: 7d, scope: consortium, qualification: eqa}
    items:
      - id: glu
        name: 葡萄糖
        category: 临床化学
        code: http://loinc.org|2345-7          # labs: LOINC; exams: urn:hub:exam-item (modality + body site)
        validity: 72h                          # hours (h) or days (d); the national rules set none
        scope: consortium                      # consortium (医联体内) or region (全区)
        qualification: eqa                     # eqa: a passing 室间质评 result for the item and year
        eqa_valid_years: 1                     # 2: last year's pass holds until this year's round is recorded
        unit: mmol/L                           # the unit results are offered in (default: the LOINC unit)
        price: 5.00                            # 元, counted as avoided cost when a result is recognized
      - id: ct-head
        code: urn:hub:exam-item|CT-HEAD
        qualification: level:secondary         # results of secondary (二级) hospitals and above

Every problem of a catalogue is reported at once; nothing is changed by a catalogue with a problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from hub.errors import InvalidRequest
from hub.fhir.search import has_control_characters

LOINC = "http://loinc.org"
EXAM_ITEM = "urn:hub:exam-item"
SCOPES = {"consortium": "医联体内", "region": "全区"}
#: Institution levels (``urn:hub:institution-level``) by rank: a level rule admits its level and those above.
LEVEL_RANK = {"township": 1, "chc": 1, "primary": 1, "secondary": 2, "tertiary": 3}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VALIDITY = re.compile(r"^\s*(\d{1,5})\s*([hd])\s*$")
_KEYS = {"id", "name", "category", "code", "kind", "validity", "scope", "qualification", "eqa_valid_years", "unit",
         "price"}


@dataclass(frozen=True)
class Item:
    """One catalogue item."""

    item_id: str
    name: str
    category: str
    system: str
    code: str
    validity: timedelta
    scope: str
    #: ``eqa`` or ``level``.
    rule: str
    #: For a level rule: the lowest level admitted.
    min_level: str | None
    unit: str | None
    price_fen: int | None
    #: For an eqa rule: the latest round recorded within this many years (the result's year first) decides.
    eqa_valid_years: int = 1

    @property
    def kind(self) -> str:
        """``exam`` for exam items, ``lab`` otherwise."""
        return "exam" if self.system == EXAM_ITEM else "lab"

    @property
    def resource_type(self) -> str:
        """Where its results are: DiagnosticReport for exams, Observation for labs."""
        return "DiagnosticReport" if self.kind == "exam" else "Observation"


@dataclass(frozen=True)
class Catalogue:
    """A checked catalogue."""

    version: str
    name: str
    items: dict[str, Item]

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_code", {(i.system, i.code): i for i in self.items.values()})

    def item_for(self, system: str | None, code: str | None) -> Item | None:
        """The item of a standard code."""
        return self.by_code.get((system or "", code or ""))  # type: ignore[attr-defined, no-any-return]


EMPTY = Catalogue("", "", {})


def parse_text(raw: bytes | str) -> dict[str, Any]:
    """A catalogue document from YAML or JSON text."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        document = yaml.safe_load(text)
        controls = has_control_characters(document)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"The catalogue is not readable YAML or JSON (UTF-8): {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise InvalidRequest("The catalogue is nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The catalogue must be a mapping with 'version' and 'items'")
    if controls:
        raise InvalidRequest("The catalogue must not contain control characters")
    return document


def validity_text(delta: timedelta) -> str:
    """``72h`` or ``30d``."""
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


def validity_words(delta: timedelta) -> str:
    """``72 小时`` or ``30 天`` (for Chinese texts)."""
    text = validity_text(delta)
    return f"{text[:-1]} 天" if text.endswith("d") else f"{text[:-1]} 小时"


def _validity(value: Any, where: str, problems: list[str]) -> timedelta:
    if value is None:
        problems.append(f"{where}: validity is required (like 72h or 30d), or set defaults.validity")
        return timedelta(0)
    found = _VALIDITY.match(str(value))
    if found is None or int(found.group(1)) == 0:
        problems.append(f"{where}: validity '{value}' must be a number of hours or days, like 72h or 30d")
        return timedelta(0)
    amount = int(found.group(1))
    return timedelta(hours=amount) if found.group(2) == "h" else timedelta(days=amount)


def _qualification(value: Any, where: str, problems: list[str]) -> tuple[str, str | None]:
    text = str(value or "").strip()
    if text == "eqa":
        return "eqa", None
    if text.startswith("level:") and text[6:] in LEVEL_RANK:
        return "level", text[6:]
    problems.append(f"{where}: qualification '{text}' must be 'eqa' or 'level:<{'|'.join(LEVEL_RANK)}>'")
    return "eqa", None


def _price(value: Any, where: str, problems: list[str]) -> int | None:
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        problems.append(f"{where}: price '{value}' must be an amount in 元 with at most two decimals")
        return None
    return int(amount * 100)


def _item(entry: Any, number: int, defaults: dict[str, Any], problems: list[str]) -> Item | None:
    if not isinstance(entry, dict):
        problems.append(f"item {number}: must be a mapping")
        return None
    item_id = str(entry.get("id") or "")
    where = f"item {number} ({item_id})" if item_id else f"item {number}"
    if not _ID.match(item_id):
        problems.append(f"{where}: id must be 1-64 letters, digits, '.', '_' or '-'")
    extra = sorted(set(entry) - _KEYS)
    if extra:
        problems.append(f"{where}: unknown field(s) {', '.join(map(str, extra))}")
    system, _, code = str(entry.get("code") or "").rpartition("|")
    if not system or not code:
        problems.append(f"{where}: code must be 'system|code' (http://loinc.org|2345-7, {EXAM_ITEM}|CT-HEAD)")
    scope = str(entry.get("scope", defaults.get("scope", "consortium")))
    if scope not in SCOPES:
        problems.append(f"{where}: scope '{scope}' must be one of {', '.join(SCOPES)}")
    validity = _validity(entry.get("validity", defaults.get("validity")), where, problems)
    rule, min_level = _qualification(entry.get("qualification", defaults.get("qualification", "eqa")), where,
                                     problems)
    unit = str(entry["unit"]).strip() if entry.get("unit") else None
    years = entry.get("eqa_valid_years", defaults.get("eqa_valid_years", 1))
    if not isinstance(years, int) or isinstance(years, bool) or not 1 <= years <= 5:
        problems.append(f"{where}: eqa_valid_years '{years}' must be a whole number of years from 1 to 5")
        years = 1
    return Item(item_id, str(entry.get("name") or item_id), str(entry.get("category") or ""), system, code,
                validity, scope, rule, min_level, unit, _price(entry.get("price"), where, problems), years)


def load_catalogue(document: dict[str, Any]) -> tuple[Catalogue, dict[str, Any]]:
    """The checked catalogue and its normalized JSON form (what is stored); every problem raises at once."""
    problems: list[str] = []
    extra = sorted(set(document) - {"version", "name", "defaults", "items"})
    if extra:
        problems.append(f"unknown top-level key(s) {', '.join(map(str, extra))}; expected version, name, "
                        "defaults, items")
    version = str(document.get("version") or "").strip()
    if not version or len(version) > 64:
        problems.append("version is required (up to 64 characters)")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults must be a mapping")
        defaults = {}
    entries = document.get("items")
    if not isinstance(entries, list) or not entries:
        problems.append("items must be a non-empty list")
        entries = []
    items: dict[str, Item] = {}
    codes: dict[tuple[str, str], str] = {}
    for number, entry in enumerate(entries, start=1):
        item = _item(entry, number, defaults, problems)
        if item is None:
            continue
        if item.item_id in items:
            problems.append(f"item {number}: id '{item.item_id}' is used twice")
        if (item.system, item.code) in codes and item.code:
            problems.append(f"item {number}: code {item.system}|{item.code} is already item "
                            f"'{codes[(item.system, item.code)]}'")
        items[item.item_id] = item
        codes[(item.system, item.code)] = item.item_id
    if problems:
        shown = "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise InvalidRequest(f"The catalogue has {len(problems)} problem(s): {shown}")
    catalogue = Catalogue(version, str(document.get("name") or ""), items)
    return catalogue, to_json(catalogue)


def to_json(catalogue: Catalogue) -> dict[str, Any]:
    """The stored (and listed) form of a catalogue."""
    return {"version": catalogue.version, "name": catalogue.name, "items": [
        {"id": i.item_id, "name": i.name, "category": i.category, "code": f"{i.system}|{i.code}", "kind": i.kind,
         "validity": validity_text(i.validity), "scope": i.scope,
         "qualification": "eqa" if i.rule == "eqa" else f"level:{i.min_level}",
         **({"eqa_valid_years": i.eqa_valid_years} if i.eqa_valid_years != 1 else {}),
         **({"unit": i.unit} if i.unit else {}),
         **({"price": f"{i.price_fen / 100:.2f}"} if i.price_fen is not None else {})}
        for i in catalogue.items.values()]}


def from_json(content: dict[str, Any] | None) -> Catalogue:
    """The stored catalogue (already checked) as objects."""
    if not content:
        return EMPTY
    return load_catalogue({k: content[k] for k in ("version", "name", "items") if k in content})[0]
