"""Search values extracted from a resource on write (the store keeps them as typed index rows).

Every searchable parameter of the resource's type (see :mod:`hub.fhir.search_params`)
is evaluated and its values turned into typed rows, following the R4 search rules for
each data type (search.html#table): a CodeableConcept gives a token per coding, a
HumanName a string per part, a Period a date range, a Range a number range, and so on.

Besides each parameter's own rows, the extractor writes rows that modifiers search:
``code:text`` (display texts, string), ``identifier:of-type`` (identifier type +
value, token), ``subject:identifier`` (Reference.identifier, token). A composite
parameter's rows go to its second component's table, under a name that carries its
first (token) component: :func:`composite_param`.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from functools import lru_cache
from typing import Any

from hub.fhir.fhirpath import prepare
from hub.fhir.repository import (
    DateIndexValue,
    IndexValues,
    NumberIndexValue,
    ReferenceIndexValue,
    StringIndexValue,
    TokenIndexValue,
    UriIndexValue,
)
from hub.fhir.search_params import SearchParam, SearchRegistry
from hub.fhir.search_values import HIGHEST, LOWEST, NUMBER_HIGHEST, NUMBER_LOWEST, date_range, normalize_string

_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}
_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_MONEY_SYSTEM = "urn:iso:std:iso:4217"
#: Which index table each parameter type writes to.
TABLE_OF_TYPE = {
    "token": "token", "string": "string", "date": "date", "reference": "reference",
    "quantity": "number", "number": "number", "uri": "uri",
}


@lru_cache(maxsize=8192)
def composite_param(code: str, system: str | None, value: str) -> str:
    """The index name of a composite parameter for one first-component token.

    ``system`` None stands for "any system" (the value alone), so each element is
    written twice: under its system|code and under its code.
    """
    key = f"{'*' if system is None else system}|{value}"
    return f"{code}${hashlib.blake2b(key.encode('utf-8'), digest_size=8).hexdigest()}"


class _Rows:
    """Index rows being collected for one resource."""

    def __init__(self) -> None:
        self.tokens: list[TokenIndexValue] = []
        self.strings: list[StringIndexValue] = []
        self.dates: list[DateIndexValue] = []
        self.numbers: list[NumberIndexValue] = []
        self.uris: list[UriIndexValue] = []
        self.references: list[ReferenceIndexValue] = []

    def string(self, param: str, text: Any) -> None:
        if isinstance(text, str) and text.strip():
            self.strings.append(StringIndexValue(param, normalize_string(text), text))

    def values(self) -> IndexValues:
        return IndexValues(
            tuple(dict.fromkeys(self.tokens)), tuple(dict.fromkeys(self.strings)), tuple(dict.fromkeys(self.dates)),
            tuple(dict.fromkeys(self.numbers)), tuple(dict.fromkeys(self.uris)), tuple(dict.fromkeys(self.references)),
        )


def token_values(value: Any, kind: str | None) -> list[tuple[str, str, list[str]]]:
    """(system, code, display texts) of a token-typed value, by its FHIR type or shape."""
    if isinstance(value, bool):
        return [("", "true" if value else "false", [])]
    if isinstance(value, str):
        return [("", value, [])] if value else []
    if not isinstance(value, dict):
        return []
    if "coding" in value or kind == "CodeableConcept" or (set(value) <= {"text", "id", "extension"} and "text" in value):
        texts = [value["text"]] if isinstance(value.get("text"), str) else []
        out = [t for coding in value.get("coding") or () for t in token_values(coding, "Coding")]
        if not out and texts:
            return [("", "", texts)]
        if out:
            out[0] = (out[0][0], out[0][1], out[0][2] + texts)
        return out
    if "code" in value and "value" not in value:  # Coding
        texts = [value["display"]] if isinstance(value.get("display"), str) else []
        code = value.get("code")
        return [(value.get("system") or "", code, texts)] if isinstance(code, str) else []
    if isinstance(value.get("value"), str):  # Identifier or ContactPoint
        system = value.get("system")
        if kind == "ContactPoint" or (system in _CONTACT_SYSTEMS and ":" not in str(system)):
            return [("", value["value"], [])]
        type_text = value.get("type", {}).get("text") if isinstance(value.get("type"), dict) else None
        return [(system if isinstance(system, str) else "", value["value"], [type_text] if type_text else [])]
    return []


def _string_values(rows: _Rows, param: str, value: Any) -> None:
    if isinstance(value, str):
        rows.string(param, value)
    elif isinstance(value, dict):
        parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        for part in parts:
            item = value.get(part)
            for text in item if isinstance(item, list) else [item]:
                rows.string(param, text)
        if "family" in value or "given" in value:  # 张 + 三: a Chinese name is searched whole
            given = value.get("given") or []
            family = value.get("family") or ""
            if isinstance(family, str) and given and isinstance(given[0], str):
                rows.string(param, family + given[0])
                rows.string(param, " ".join([*[g for g in given if isinstance(g, str)], family]))


def date_values(value: Any) -> list[tuple[int, int]]:
    """(low, high) ranges of a date-typed value: date/dateTime/instant, Period or Timing."""
    if isinstance(value, str):
        found = date_range(value)
        return [found] if found else []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:
        start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
        end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
        return [(start[0] if start else LOWEST, end[1] if end else HIGHEST)]
    events = [r for e in value.get("event") or () if isinstance(e, str) and (r := date_range(e))]
    bounds = (value.get("repeat") or {}).get("boundsPeriod") if isinstance(value.get("repeat"), dict) else None
    return events + (date_values(bounds) if bounds else [])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    return float(value)


def number_values(value: Any) -> list[NumberIndexValue]:
    """Number rows of a number- or quantity-typed value (param name filled in by the caller)."""
    plain = _number(value)
    if plain is not None:
        return [NumberIndexValue("", plain, plain)]
    if not isinstance(value, dict):
        return []
    if "low" in value or "high" in value:  # Range
        low, high = value.get("low") or {}, value.get("high") or {}
        lo, hi = _number(low.get("value")), _number(high.get("value"))
        unit = low or high
        return [NumberIndexValue("", NUMBER_LOWEST if lo is None else lo, NUMBER_HIGHEST if hi is None else hi,
                                 unit.get("system") or "", unit.get("code") or unit.get("unit") or "")]
    amount = _number(value.get("value"))
    if amount is None:
        return []
    if "currency" in value:
        return [NumberIndexValue("", amount, amount, _MONEY_SYSTEM, value["currency"])]
    rows = [NumberIndexValue("", amount, amount, value.get("system") or "", value.get("code") or "")]
    if value.get("unit") and value.get("unit") != value.get("code"):
        rows.append(NumberIndexValue("", amount, amount, "", value["unit"]))
    return rows


def _reference(param: str, value: Any, rows: _Rows) -> None:
    if isinstance(value, str):  # canonical
        rows.references.append(ReferenceIndexValue(param, "", "", value.split("|", 1)[0]))
        return
    if not isinstance(value, dict):
        return
    literal = value.get("reference")
    if isinstance(literal, str) and not literal.startswith("#"):
        if "://" in literal or literal.startswith("urn:"):
            rows.references.append(ReferenceIndexValue(param, "", "", literal))
        else:
            parts = literal.split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            if len(parts) == 2 and parts[0][:1].isupper() and parts[1]:
                rows.references.append(ReferenceIndexValue(param, parts[0], parts[1]))
    identifier = value.get("identifier")
    if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
        system = identifier.get("system") if isinstance(identifier.get("system"), str) else ""
        rows.tokens.append(TokenIndexValue(f"{param}:identifier", system, identifier["value"]))


def _index_value(param: SearchParam, name: str, value: Any, kind: str | None, rows: _Rows) -> None:
    """Add the rows of one value of ``param`` under index name ``name``."""
    if param.type == "token":
        for system, code, texts in token_values(value, kind):
            if code:
                rows.tokens.append(TokenIndexValue(name, system, code))
            for text in texts:
                rows.string(f"{name}:text", text)
        if isinstance(value, dict) and isinstance(value.get("type"), dict) and isinstance(value.get("value"), str):
            for tsys, tcode, _t in token_values(value["type"], "CodeableConcept"):
                rows.tokens.append(TokenIndexValue(f"{name}:of-type", f"{tsys}|{tcode}", value["value"]))
    elif param.type == "string":
        _string_values(rows, name, value)
    elif param.type == "date":
        rows.dates.extend(DateIndexValue(name, low, high) for low, high in date_values(value))
    elif param.type in ("quantity", "number"):
        rows.numbers.extend(NumberIndexValue(name, n.low, n.high, n.system, n.code) for n in number_values(value))
    elif param.type == "uri":
        if isinstance(value, str) and value:
            rows.uris.append(UriIndexValue(name, value))
    elif param.type == "reference":
        _reference(name, value, rows)


def _composite(param: SearchParam, resource: dict[str, Any], rows: _Rows) -> None:
    first, second = param.components
    for root, _kind in param.expression.evaluate(resource) if param.expression else ():
        values = second.expression.evaluate(root)
        if not values:
            continue
        keys = dict.fromkeys(
            composite_param(param.code, system, code)
            for value, kind in first.expression.evaluate(root)
            for sys_, code, _texts in token_values(value, kind) if code
            for system in (sys_, None)
        )
        for value, kind in values:
            for key in keys:
                _index_value(second.param, key, value, kind, rows)


def extract_index(resource: dict[str, Any], registry: SearchRegistry) -> IndexValues:
    """Every search value of ``resource`` (with its server ``meta``) for the registry's parameters."""
    rows = _Rows()
    resource = prepare(resource)
    for param in registry.indexed(resource["resourceType"]):
        if param.first_names is not None and not any(name in resource for name in param.first_names):
            continue
        if param.type == "composite":
            _composite(param, resource, rows)
            continue
        for value, kind in param.expression.evaluate(resource) if param.expression else ():
            _index_value(param, param.code, value, kind, rows)
    return rows.values()
