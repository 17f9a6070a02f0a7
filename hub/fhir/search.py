"""Search requests: from query parameters to a :class:`SearchSpec`.

This foundation understands ``_id`` and ``identifier`` (what conditional
create/update/delete need) and the result parameters ``_count``, ``_offset``,
``_total`` and ``_summary=count``. Any other parameter is refused with a clear
OperationOutcome rather than silently ignored: a downstream app asking for
``Patient?name=…`` must not receive every patient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from hub.errors import InvalidRequest, NotSupported
from hub.fhir.indexing import identifier_paths
from hub.fhir.repository import Criterion, IdCriterion, IndexValues, SearchSpec, TokenCriterion
from hub.fhir.resource_types import ID_PATTERN
from hub.privacy import clip

#: Parameters that change nothing here (format negotiation is JSON-only).
_IGNORED = {"_format", "_pretty"}


@dataclass(frozen=True)
class SearchRequest:
    """A parsed search: what to find and how to page it."""

    spec: SearchSpec
    total: str  # "accurate" or "none"
    summary_count: bool
    #: The parameters that took effect, for the bundle's self link.
    params: tuple[tuple[str, str], ...]


def parse_query(query: str) -> list[tuple[str, str]]:
    """Split a URL query string (``a=1&b=2``) into decoded pairs."""
    query = query[1:] if query.startswith("?") else query
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise InvalidRequest(f"Malformed query string: {exc}") from None


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


def _token(raw: str) -> tuple[str | None, str | None]:
    pieces = split_escaped(raw, "|")
    if len(pieces) == 1:
        return None, pieces[0]
    if len(pieces) == 2:
        system, code = pieces
        return system, code or None
    raise InvalidRequest(f"Invalid token value '{clip(raw, 80)}': at most one '|' is allowed")


def int_param(name: str, raw: str, low: int, high: int | None) -> int:
    """A decimal integer parameter in ``low`` .. 2^31-1, capped at ``high``; 400 otherwise."""
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]{1,10}", text):
        raise InvalidRequest(f"Parameter {name} must be an integer, got '{clip(raw, 20)}'")
    value = int(text)
    if value < low or value >= 2**31:
        raise InvalidRequest(f"Parameter {name} must be between {low} and {2**31 - 1}")
    return min(value, high) if high is not None else value


@dataclass(frozen=True)
class Paging:
    """``_count`` and ``_offset`` of a search or history request, and the other parameters."""

    count: int
    offset: int
    #: ``_count`` as given, for the self/next links (``_offset`` is set per link).
    kept: list[tuple[str, str]]
    #: Parameters that are not about paging or format.
    rest: list[tuple[str, str]]


def parse_paging(params: list[tuple[str, str]], default_count: int, max_count: int) -> Paging:
    """Take ``_count``, ``_offset`` and the ignored format parameters out of ``params``."""
    count, offset = default_count, 0
    kept: list[tuple[str, str]] = []
    rest: list[tuple[str, str]] = []
    for name, value in params:
        if name == "_count":
            count = int_param(name, value, 0, max_count)
            kept.append((name, value))
        elif name == "_offset":
            offset = int_param(name, value, 0, None)
        elif name not in _IGNORED:
            rest.append((name, value))
    return Paging(count, offset, kept, rest)


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
) -> SearchRequest:
    """Turn query parameters into a :class:`SearchRequest`; refuse what is unsupported."""
    criteria: list[Criterion] = []
    paging = parse_paging(params, default_count, max_count)
    total, summary_count = "accurate", False
    has_identifier = resource_type in identifier_paths()
    for name, value in paging.rest:
        base, _, modifier = name.partition(":")
        if name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest("Parameter _total must be none, estimate or accurate")
            total = "none" if value == "none" else "accurate"
        elif name == "_summary":
            if value != "count":
                raise NotSupported("Only _summary=count is supported")
            summary_count = True
        elif base == "_id" and not modifier:
            ids = tuple(v for v in split_escaped(value, ",") if v)
            if not ids or any(not ID_PATTERN.match(i) for i in ids):
                raise InvalidRequest(f"Invalid _id value '{clip(value, 80)}'")
            criteria.append(IdCriterion(ids))
        elif base == "identifier" and has_identifier and not modifier:
            values = tuple(_token(v) for v in split_escaped(value, ",") if v)
            if not values:
                raise InvalidRequest("Parameter identifier needs a value")
            criteria.append(TokenCriterion("identifier", values))
        else:
            supported = "_id, identifier" if has_identifier else "_id"
            raise NotSupported(
                f"Search parameter '{clip(name, 64)}' is not supported for {resource_type} "
                f"(supported: {supported}, _count, _offset, _total, _summary=count)"
            )
    spec = SearchSpec(resource_type, tuple(criteria), offset=paging.offset, count=paging.count)
    return SearchRequest(spec, total, summary_count, tuple(paging.kept + paging.rest))


def parse_conditional(resource_type: str, query: str, *, max_count: int) -> SearchSpec:
    """The search behind a conditional interaction (``If-None-Exist``, ``PUT Type?…``)."""
    params = parse_query(query)
    if not params:
        raise InvalidRequest("A conditional interaction needs search criteria")
    request = parse_search(resource_type, params, default_count=2, max_count=max_count)
    if not request.spec.criteria:
        raise InvalidRequest("A conditional interaction needs at least one search criterion")
    return SearchSpec(resource_type, request.spec.criteria, offset=0, count=2)


def matches_in_memory(spec: SearchSpec, resource_id: str, index: IndexValues) -> bool:
    """Whether a resource not yet stored (id + extracted index values) matches ``spec``."""
    for criterion in spec.criteria:
        if isinstance(criterion, IdCriterion):
            if resource_id not in criterion.ids:
                return False
        elif isinstance(criterion, TokenCriterion):
            tokens = [t for t in index.tokens if t.param == criterion.param]
            if not any(
                (system is None or token.system == system) and (code is None or token.value == code)
                for system, code in criterion.values
                for token in tokens
            ):
                return False
    return True
