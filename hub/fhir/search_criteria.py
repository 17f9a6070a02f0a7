"""From one search parameter (``name=value``) to a :mod:`criterion <hub.fhir.criteria>`.

Follows R4 search.html: modifiers per parameter type, prefixes on dates and numbers,
``system|code`` tokens, ``Type/id`` references, ``$``-joined composites, chains
(``subject:Patient.name=…``, up to three links) and reverse chains (``_has``).
Malformed values raise :class:`InvalidRequest` naming the parameter; unknown
parameters raise :class:`UnknownParameter` (ignored under ``handling=lenient``).
"""

from __future__ import annotations

import time

from hub.errors import InvalidRequest, NotSupported
from hub.fhir.criteria import (
    AllOf,
    AnyOf,
    ChainCriterion,
    Criterion,
    DateCriterion,
    HasCriterion,
    IdCriterion,
    LastUpdatedCriterion,
    MissingCriterion,
    NumberCriterion,
    RangeValue,
    ReferenceCriterion,
    ReferenceValue,
    StringCriterion,
    TokenCriterion,
    UriCriterion,
)
from hub.fhir.indexing import TABLE_OF_TYPE, composite_param
from hub.fhir.resource_types import ID_PATTERN, TYPE_PATTERN, resource_types
from hub.fhir.search_params import SearchParam, SearchRegistry
from hub.fhir.search_values import normalize_string, parse_date_value, parse_number_value, precision_range
from hub.privacy import clip

MAX_CHAIN = 3


class UnknownParameter(NotSupported):
    """A search parameter the resource type does not have (ignored when the client asks for lenient handling)."""


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` except where escaped with a backslash (FHIR search escaping)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            nxt = next(chars, "")
            current.append(nxt if nxt in (",", "|", "$", "\\") else "\\" + nxt)
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _values(name: str, raw: str) -> list[str]:
    values = [v for v in split_escaped(raw, ",") if v != ""]
    if not values:
        raise InvalidRequest(f"Parameter {clip(name, 64)} needs a value")
    return values


def parse_token(name: str, raw: str) -> tuple[str | None, str | None]:
    """``(system, code)`` of ``code``, ``system|code``, ``|code`` or ``system|``."""
    pieces = split_escaped(raw, "|")
    if len(pieces) == 1:
        return None, pieces[0]
    if len(pieces) == 2:
        system, code = pieces
        if not system and not code:
            raise InvalidRequest(f"Parameter {clip(name, 64)}: '|' alone is not a token")
        return system, code or None
    raise InvalidRequest(f"Parameter {clip(name, 64)}: invalid token '{clip(raw, 80)}' (at most one '|')")


def _missing(name: str, param: SearchParam, raw: str) -> MissingCriterion:
    if raw not in ("true", "false"):
        raise InvalidRequest(f"Parameter {clip(name, 64)} must be true or false")
    if param.type == "composite":
        raise NotSupported(f"Parameter {clip(name, 64)}: :missing is not supported on composite parameters")
    return MissingCriterion(TABLE_OF_TYPE[param.type], param.code, raw == "true")


def _no_modifier(name: str, modifier: str, allowed: tuple[str, ...]) -> None:
    if modifier not in allowed:
        shown = ", ".join(f":{m}" for m in allowed if m) or "none"
        raise InvalidRequest(f"Parameter {clip(name, 64)}: modifier ':{clip(modifier, 20)}' is not supported here "
                             f"(supported: {shown})")


class CriteriaParser:
    """Parses the criteria of searches on one registry (and the server's base URL)."""

    def __init__(self, registry: SearchRegistry, base_url: str = "") -> None:
        self.registry = registry
        self.base_url = base_url

    def parse(self, resource_type: str, name: str, raw: str, depth: int = 0) -> Criterion:
        """The criterion of ``name=raw`` on ``resource_type``."""
        if name.startswith("_has:"):
            return self._has(resource_type, name, raw, depth)
        head, dot, tail = name.partition(".")
        if dot:
            return self._chain(resource_type, name, head, tail, raw, depth)
        code, _, modifier = name.partition(":")
        if code == "_id":
            _no_modifier(name, modifier, ("", "not"))
            ids = tuple(_values(name, raw))
            if any(not ID_PATTERN.match(i) for i in ids):
                raise InvalidRequest(f"Invalid _id value '{clip(raw, 80)}'")
            return IdCriterion(ids, negate=modifier == "not")
        if code == "_lastUpdated":
            _no_modifier(name, modifier, ("",))
            return LastUpdatedCriterion(tuple(self._date_value(name, v) for v in _values(name, raw)))
        param = self.param(resource_type, code)
        if param.union_of:  # searched through the parameters it is made of
            parts = tuple(self._one(p, name, modifier, raw) for p in param.union_of)
            negative = modifier == "not" or (modifier == "missing" and raw == "true")
            return AllOf(parts) if negative else AnyOf(parts)
        return self._one(param, name, modifier, raw)

    def _one(self, param: SearchParam, name: str, modifier: str, raw: str) -> Criterion:
        if modifier == "missing":
            return _missing(name, param, raw)
        return self._typed(param, name, param.code, modifier, raw)

    def param(self, resource_type: str, code: str) -> SearchParam:
        """A searchable parameter of ``resource_type``; 400 otherwise."""
        param = self.registry.get(resource_type, code)
        if param is None:
            raise UnknownParameter(f"Unknown search parameter '{clip(code, 64)}' for {resource_type}")
        if not param.searchable:
            raise NotSupported(f"Search parameter '{clip(code, 64)}' of {resource_type} is not supported: "
                               f"{param.unsupported}")
        return param

    def _typed(self, param: SearchParam, name: str, index: str, modifier: str, raw: str) -> Criterion:
        kind = param.type
        if kind == "token":
            return self._token(name, index, modifier, raw)
        if kind == "string":
            _no_modifier(name, modifier, ("", "exact", "contains"))
            values = _values(name, raw)
            if modifier == "exact":
                return StringCriterion(index, tuple(values), "exact")
            normalized = tuple(normalize_string(v) for v in values)
            if any(not v for v in normalized):
                raise InvalidRequest(f"Parameter {clip(name, 64)} needs a value")
            return StringCriterion(index, normalized, modifier or "start")
        if kind == "date":
            _no_modifier(name, modifier, ("",))
            return DateCriterion(index, tuple(self._date_value(name, v) for v in _values(name, raw)))
        if kind == "number":
            _no_modifier(name, modifier, ("",))
            return NumberCriterion(index, tuple(self._number_value(name, v) for v in _values(name, raw)))
        if kind == "quantity":
            _no_modifier(name, modifier, ("",))
            return NumberCriterion(index, tuple(self._quantity_value(name, v) for v in _values(name, raw)))
        if kind == "uri":
            _no_modifier(name, modifier, ("", "below", "above"))
            return UriCriterion(index, tuple(_values(name, raw)), modifier or "exact")
        if kind == "reference":
            return self._reference(param, name, index, modifier, raw)
        if kind == "composite":
            _no_modifier(name, modifier, ("",))
            return self._composite(param, name, raw)
        raise NotSupported(f"Search parameter '{clip(name, 64)}' ({kind}) is not supported")

    def _token(self, name: str, index: str, modifier: str, raw: str) -> Criterion:
        _no_modifier(name, modifier, ("", "not", "text", "of-type"))
        values = _values(name, raw)
        if modifier == "text":
            return StringCriterion(f"{index}:text", tuple(normalize_string(v) for v in values), "start")
        if modifier == "of-type":
            typed = []
            for value in values:
                parts = split_escaped(value, "|")
                if len(parts) != 3 or not all(parts):
                    raise InvalidRequest(f"Parameter {clip(name, 64)} takes type-system|type-code|value")
                typed.append((f"{parts[0]}|{parts[1]}", parts[2]))
            return TokenCriterion(f"{index}:of-type", tuple(typed))
        return TokenCriterion(index, tuple(parse_token(name, v) for v in values), negate=modifier == "not")

    def _date_value(self, name: str, raw: str) -> RangeValue:
        prefix, low, high = parse_date_value(name, raw)
        if prefix == "ap":  # 10% of the gap between now and the date, on either side
            margin = abs(time.time() * 1_000_000 - low) // 10
            low, high = low - margin, high + margin
        return RangeValue(prefix, low, high)

    def _number_value(self, name: str, raw: str) -> RangeValue:
        prefix, value = parse_number_value(name, raw)
        low, high = precision_range(value)
        if prefix == "ap":  # 10% of the value, on either side
            low, high = float(value) - abs(float(value)) / 10, float(value) + abs(float(value)) / 10
        return RangeValue(prefix, low, high, float(value))

    def _quantity_value(self, name: str, raw: str) -> RangeValue:
        parts = split_escaped(raw, "|")
        if len(parts) not in (1, 3):
            raise InvalidRequest(f"Parameter {clip(name, 64)} takes [prefix]number or [prefix]number|system|code")
        number = self._number_value(name, parts[0])
        system, code = (parts[1] or None, parts[2] or None) if len(parts) == 3 else (None, None)
        return RangeValue(number.prefix, number.low, number.high, number.value, system, code)

    def _reference(self, param: SearchParam, name: str, index: str, modifier: str, raw: str) -> Criterion:
        values = _values(name, raw)
        if modifier == "identifier":
            return TokenCriterion(f"{index}:identifier", tuple(parse_token(name, v) for v in values))
        if modifier and modifier not in resource_types():
            raise InvalidRequest(f"Parameter {clip(name, 64)}: modifier ':{clip(modifier, 40)}' is not supported "
                                 "(use :missing, :identifier or a resource type)")
        if modifier and param.targets and modifier not in param.targets:
            raise InvalidRequest(f"Parameter {clip(name, 64)}: {modifier} is not a target of {param.code}")
        return ReferenceCriterion(index, tuple(self._reference_value(name, modifier, v) for v in values),
                                  (modifier,) if modifier else param.targets)

    def _reference_value(self, name: str, modifier: str, raw: str) -> ReferenceValue:
        text = raw
        if self.base_url and text.startswith(self.base_url + "/"):
            text = text[len(self.base_url) + 1:]
        elif "://" in text or text.startswith("urn:"):
            return ReferenceValue(None, None, text.split("|", 1)[0])
        parts = text.split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) == 1 and ID_PATTERN.match(parts[0]):
            return ReferenceValue(modifier or None, parts[0])
        if len(parts) == 2 and parts[0] in resource_types() and ID_PATTERN.match(parts[1]):
            if modifier and parts[0] != modifier:
                raise InvalidRequest(f"Parameter {clip(name, 64)}: '{clip(raw, 80)}' is not a {modifier}")
            return ReferenceValue(parts[0], parts[1])
        raise InvalidRequest(f"Parameter {clip(name, 64)}: '{clip(raw, 80)}' is not a reference "
                             "(use Type/id, an id or an absolute URL)")

    def _composite(self, param: SearchParam, name: str, raw: str) -> Criterion:
        first, second = param.components
        alternatives: list[Criterion] = []
        for value in _values(name, raw):
            parts = split_escaped(value, "$")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise InvalidRequest(f"Parameter {clip(name, 64)} takes two values joined by '$'")
            system, code = parse_token(name, parts[0])
            if code is None:
                raise InvalidRequest(f"Parameter {clip(name, 64)}: the first part needs a code")
            index = composite_param(param.code, system, code)
            alternatives.append(self._typed(second.param, name, index, "", parts[1].replace(",", "\\,")))
        return alternatives[0] if len(alternatives) == 1 else AnyOf(tuple(alternatives))

    def _chain(self, resource_type: str, name: str, head: str, tail: str, raw: str, depth: int) -> Criterion:
        if depth >= MAX_CHAIN:
            raise InvalidRequest(f"Parameter {clip(name, 80)}: chains are limited to {MAX_CHAIN} links")
        code, _, modifier = head.partition(":")
        param = self.param(resource_type, code)
        if param.type != "reference":
            raise InvalidRequest(f"Parameter {clip(name, 80)}: {code} is not a reference parameter, it cannot be chained")
        if modifier and modifier not in resource_types():
            raise InvalidRequest(f"Parameter {clip(name, 80)}: ':{clip(modifier, 40)}' is not a resource type")
        targets = (modifier,) if modifier else param.targets
        next_code = tail.partition(".")[0].partition(":")[0]
        chained: list[Criterion] = []
        for target in targets:
            if next_code in ("_id", "_lastUpdated") or next_code.startswith("_has") or self.registry.get(target, next_code):
                chained.append(ChainCriterion(param.code, target, (self.parse(target, tail, raw, depth + 1),)))
        if not chained:
            raise UnknownParameter(f"Parameter {clip(name, 80)}: no target of {code} has a parameter '{next_code}'")
        return chained[0] if len(chained) == 1 else AnyOf(tuple(chained))

    def _has(self, resource_type: str, name: str, raw: str, depth: int) -> Criterion:
        if depth >= MAX_CHAIN:
            raise InvalidRequest(f"Parameter {clip(name, 80)}: chains are limited to {MAX_CHAIN} links")
        parts = name.split(":", 3)
        if len(parts) != 4 or not TYPE_PATTERN.match(parts[1]) or parts[1] not in resource_types():
            raise InvalidRequest(f"Parameter {clip(name, 80)}: use _has:Type:reference-param:search-param=value")
        source_type, code, rest = parts[1], parts[2], parts[3]
        param = self.param(source_type, code)
        if param.type != "reference":
            raise InvalidRequest(f"Parameter {clip(name, 80)}: {code} of {source_type} is not a reference parameter")
        if param.targets and resource_type not in param.targets:
            raise InvalidRequest(f"Parameter {clip(name, 80)}: {source_type}.{code} does not refer to {resource_type}")
        return HasCriterion(source_type, param.code, (self.parse(source_type, rest, raw, depth + 1),))
