"""Search requests: from query parameters to a :class:`SearchRequest`.

Criteria come from :mod:`hub.fhir.search_criteria`; this module handles the result
parameters (``_count``, ``_sort``, ``_total``, ``_summary``, ``_elements``,
``_include``, ``_revinclude``), paging cursors and the rules for unknown parameters:
refused with 400, or ignored (and left out of the ``self`` link) when the client asks
for ``Prefer: handling=lenient``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from hub.errors import InvalidRequest, NotSupported
from hub.fhir.criteria import Criterion, DateCriterion, NumberCriterion, SortKey
from hub.fhir.indexing import TABLE_OF_TYPE
from hub.fhir.repository import SearchSpec
from hub.fhir.resource_types import resource_types
from hub.fhir.search_criteria import CriteriaParser, UnknownParameter, split_escaped
from hub.fhir.search_params import SearchRegistry
from hub.fhir.subsetting import ElementSelection, parse_elements, parse_summary
from hub.privacy import clip

#: Parameters that change nothing here (format negotiation is JSON-only).
_IGNORED = {"_format", "_pretty"}
_UNSUPPORTED = {"_contained", "_containedType", "_text", "_content", "_list", "_query", "_filter"}
#: Parameters of system-level searches that every type has.
_COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")

__all__ = ["Include", "Paging", "SearchRequest", "int_param", "parse_conditional", "parse_filter", "parse_paging",
           "parse_query", "parse_search", "split_escaped"]


def parse_query(query: str) -> list[tuple[str, str]]:
    """Split a URL query string (``a=1&b=2``) into decoded pairs."""
    query = query[1:] if query.startswith("?") else query
    try:
        return parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:
        raise InvalidRequest(f"Malformed query string: {exc}") from None


def int_param(name: str, raw: str, low: int, high: int | None) -> int:
    """A decimal integer parameter in ``low`` .. 2^31-1, capped at ``high``; 400 otherwise."""
    text = raw.strip()
    if not re.fullmatch(r"-?[0-9]{1,10}", text):
        raise InvalidRequest(f"Parameter {name} must be an integer, got '{clip(raw, 20)}'")
    value = int(text)
    if value < low or value >= 2**31:
        raise InvalidRequest(f"Parameter {name} must be between {low} and {2**31 - 1}")
    return min(value, high) if high is not None else value


def _key(name: str, raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", raw):
        raise InvalidRequest(f"Parameter {name} is a paging cursor from a link this server made")
    return int(raw)


@dataclass(frozen=True)
class Paging:
    """``_count`` and ``_offset`` of a search or history request, and the other parameters."""

    count: int
    offset: int
    #: ``_count`` as given, for the self/next links (``_offset`` is set per link).
    kept: list[tuple[str, str]]
    #: Parameters that are not about paging or format.
    rest: list[tuple[str, str]]


#: Characters no search value (nor any text the hub stores) may hold; PostgreSQL cannot store a NUL at all.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def has_control_characters(value: Any) -> bool:
    """Does a parsed document (texts, lists and mappings, keys included) hold a control character anywhere?"""
    if isinstance(value, str):
        return CONTROL_CHARACTERS.search(value) is not None
    if isinstance(value, dict):
        return any(has_control_characters(k) or has_control_characters(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_control_characters(v) for v in value)
    return False


#: More parameters than this in one search are refused (each can be a subquery).
MAX_PARAMETERS = 100


def check_parameters(params: list[tuple[str, str]]) -> None:
    """400 for more than :data:`MAX_PARAMETERS` parameters, or a name or value with a control
    character (FHIR strings allow none but tab, CR and LF)."""
    if len(params) > MAX_PARAMETERS:
        raise InvalidRequest(f"A search takes at most {MAX_PARAMETERS} parameters; this one has {len(params)}")
    for name, value in params:
        if CONTROL_CHARACTERS.search(name) or CONTROL_CHARACTERS.search(value):
            raise InvalidRequest(f"Parameter '{clip(CONTROL_CHARACTERS.sub('?', name), 64)}' contains a control character")


def parse_paging(params: list[tuple[str, str]], default_count: int, max_count: int) -> Paging:
    """Take ``_count``, ``_offset`` and the ignored format parameters out of ``params``."""
    check_parameters(params)
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


@dataclass(frozen=True)
class Include:
    """An ``_include`` (``reverse`` False) or ``_revinclude``: ``source_type:param[:target_type]``."""

    source_type: str
    param: str | None  # None: every reference parameter (``*``)
    target_type: str | None
    reverse: bool
    iterate: bool


@dataclass(frozen=True)
class SearchRequest:
    """A parsed search: what to find, how to page it and what to return."""

    spec: SearchSpec
    total: str  # "accurate", "estimate" or "none"
    summary: str | None
    elements: ElementSelection | None
    includes: tuple[Include, ...] = ()
    #: The parameters that took effect, for the bundle's links (without paging cursors).
    params: tuple[tuple[str, str], ...] = ()
    #: What was ignored under lenient handling (reported in the bundle).
    ignored: tuple[str, ...] = field(default_factory=tuple)


def _sort_keys(registry: SearchRegistry, types: list[str], raw: str) -> tuple[SortKey, ...]:
    keys = []
    for item in split_escaped(raw, ","):
        code = item.strip()
        descending = code.startswith("-")
        code = code.lstrip("-")
        if code in ("_id", "_lastUpdated"):
            keys.append(SortKey(code, code, descending))
            continue
        param = registry.get(types[0], code) if types else None
        if param is not None and param.union_of:
            param = param.union_of[0]
        if param is None or not param.searchable or param.type not in TABLE_OF_TYPE:
            raise InvalidRequest(f"Parameter _sort: '{clip(code, 64)}' is not a sortable parameter of "
                                 f"{'/'.join(types) or 'every type'}")
        keys.append(SortKey(param.code, TABLE_OF_TYPE[param.type], descending))
    if not keys:
        raise InvalidRequest("Parameter _sort needs a value")
    return tuple(keys)


def _include(registry: SearchRegistry, name: str, raw: str) -> Include:
    reverse = name.startswith("_revinclude")
    iterate = name.endswith((":iterate", ":recurse"))
    if raw == "*":
        return Include("*", None, None, reverse, iterate)
    parts = raw.split(":")
    if len(parts) not in (2, 3) or parts[0] not in resource_types():
        raise InvalidRequest(f"Parameter {name}: '{clip(raw, 80)}' must be SourceType:parameter[:TargetType]")
    source_type, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if target is not None and target not in resource_types():
        raise InvalidRequest(f"Parameter {name}: '{clip(target, 40)}' is not a resource type")
    if code == "*":
        return Include(source_type, None, target, reverse, iterate)
    param = registry.get(source_type, code)
    if param is None or param.type != "reference":
        raise InvalidRequest(f"Parameter {name}: '{clip(code, 64)}' is not a reference parameter of {source_type}")
    return Include(source_type, param.code, target, reverse, iterate)


def parse_search(
    resource_type: str | None,
    params: list[tuple[str, str]],
    registry: SearchRegistry,
    *,
    default_count: int,
    max_count: int,
    base_url: str = "",
    lenient: bool = False,
    extra: tuple[Criterion, ...] = (),
) -> SearchRequest:
    """Turn query parameters into a :class:`SearchRequest`; refuse what is unsupported.

    ``resource_type`` None is a system-level search (``_type`` chooses the types).
    ``extra`` criteria are added (a compartment).
    """
    parser = CriteriaParser(registry, base_url)
    criteria: list[Criterion] = list(extra)
    kept: list[tuple[str, str]] = []
    ignored: list[str] = []
    count, offset = default_count, 0
    cursors: dict[str, int] = {}
    total, summary, elements_raw, sort_raw = "accurate", None, None, None
    includes: list[Include] = []
    types = [resource_type] if resource_type else []
    deferred: list[tuple[str, str]] = []
    check_parameters(params)
    for name, value in params:
        if name == "_type" and resource_type is None:
            types = [t.strip() for t in value.split(",") if t.strip()]
            unknown = [t for t in types if t not in resource_types()]
            if unknown or not types:
                raise InvalidRequest(f"Parameter _type: unknown resource type '{clip(unknown[0] if unknown else '', 40)}'")
            kept.append((name, value))
        else:
            deferred.append((name, value))
    for name, value in deferred:
        base = name.partition(":")[0]
        if name == "_count":
            count = int_param(name, value, 0, max_count)
        elif name == "_offset":
            offset = int_param(name, value, 0, None)
        elif name in ("_after", "_before", "_bound"):
            cursors[name] = _key(name, value)
            continue
        elif name in _IGNORED:
            continue
        elif name == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise InvalidRequest("Parameter _total must be none, estimate or accurate")
            total = value
        elif name == "_summary":
            summary = parse_summary(value)
        elif name == "_elements":
            elements_raw = value
        elif name == "_sort":
            sort_raw = value
        elif base in ("_include", "_revinclude"):
            if name not in (base, f"{base}:iterate", f"{base}:recurse"):
                raise InvalidRequest(f"Parameter {clip(name, 64)}: only :iterate is supported")
            includes.append(_include(registry, name, value))
        elif base in _UNSUPPORTED:
            raise NotSupported(f"Search parameter '{clip(name, 64)}' is not supported")
        else:
            try:
                criteria.append(_criterion(parser, resource_type, types, name, value))
            except UnknownParameter:
                if not lenient:
                    raise
                ignored.append(name)
                continue
        kept.append((name, value))
    if resource_type is not None:
        criteria = _merge_ranges(registry, resource_type, criteria)
    sort = _sort_keys(registry, types, sort_raw) if sort_raw else ()
    elements = parse_elements(elements_raw, types or sorted(resource_types())) if elements_raw else None
    if summary == "count":
        count = 0
    spec = SearchSpec(resource_type, tuple(criteria), offset, count, sort, cursors.get("_after"),
                      cursors.get("_before"), cursors.get("_bound"), tuple(types) if resource_type is None else ())
    return SearchRequest(spec, total, summary, elements, tuple(includes), tuple(kept), tuple(ignored))


def _merge_ranges(registry: SearchRegistry, resource_type: str, criteria: list[Criterion]) -> list[Criterion]:
    """``birthdate=ge1980&birthdate=le1989`` on a single-valued parameter: one range, read from one index scan.

    Two separate criteria each scan half the index; on a parameter with at most one value
    per resource, "a value ≥ 1980 and a value ≤ 1989" means the same value, so both
    bounds apply to the same index row.
    """
    groups: dict[tuple[type, str], list[DateCriterion | NumberCriterion]] = {}
    for criterion in criteria:
        if isinstance(criterion, (DateCriterion, NumberCriterion)) and len(criterion.values) == 1:
            param = registry.get(resource_type, criterion.param)
            if param is not None and param.single_valued:
                groups.setdefault((type(criterion), criterion.param), []).append(criterion)
    merged: list[Criterion] = []
    for criterion in criteria:
        if isinstance(criterion, (DateCriterion, NumberCriterion)):
            group = groups.get((type(criterion), criterion.param))
            if group and len(group) > 1:
                if criterion is group[0]:
                    values = tuple(v for c in group for v in c.values)
                    merged.append(type(criterion)(criterion.param, values, all_of=True))
                continue
        merged.append(criterion)
    return merged


def _criterion(
    parser: CriteriaParser, resource_type: str | None, types: list[str], name: str, value: str
) -> Criterion:
    if resource_type is not None:
        return parser.parse(resource_type, name, value)
    code = name.partition(":")[0]
    if code not in _COMMON:
        raise UnknownParameter(f"Search parameter '{clip(name, 64)}' is not supported across types "
                               f"(use {', '.join(_COMMON)}, or search one type)")
    # Every type has the common parameters, and they are indexed alike for every type.
    return parser.parse(types[0] if types else "Patient", name, value)


def parse_conditional(
    resource_type: str, query: str, registry: SearchRegistry, *, max_count: int
) -> SearchSpec:
    """The search behind a conditional interaction (``If-None-Exist``, ``PUT Type?…``)."""
    params = parse_query(query)
    if not params:
        raise InvalidRequest("A conditional interaction needs search criteria")
    request = parse_search(resource_type, params, registry, default_count=2, max_count=max_count)
    if not request.spec.criteria:
        raise InvalidRequest("A conditional interaction needs at least one search criterion")
    return SearchSpec(resource_type, request.spec.criteria, offset=0, count=2)


#: Parameters that shape a result page rather than choose resources.
_RESULT_PARAMETERS = frozenset({"_count", "_offset", "_sort", "_total", "_summary", "_elements", "_include",
                                "_revinclude", "_after", "_before", "_bound"})


def parse_filter(resource_type: str, query: str, registry: SearchRegistry, *, purpose: str) -> tuple[Criterion, ...]:
    """The criteria of a search query used as a filter (``Subscription.criteria``, ``_typeFilter``).

    No criteria at all is every resource of the type; result parameters (``_sort``,
    ``_include``, ``_count``…) mean nothing to a filter and are refused, naming ``purpose``.
    """
    params = parse_query(query)
    for name, _value in params:
        if name.partition(":")[0] in _RESULT_PARAMETERS:
            raise InvalidRequest(f"{purpose} takes search criteria only, not '{clip(name, 64)}'")
    return parse_search(resource_type, params, registry, default_count=1, max_count=1).spec.criteria
