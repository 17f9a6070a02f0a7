"""Matching criteria against index values in memory (resources a transaction has not written yet).

The same rules as the SQL the store runs (:mod:`hub.store.search_sql`); a conditional
reference or create inside a transaction must find the resources written earlier in
the same Bundle. Chains, ``_has`` and ``_lastUpdated`` need stored resources and are
refused here with a clear message.
"""

from __future__ import annotations

from hub.errors import NotSupported
from hub.fhir.criteria import (
    AllOf,
    AnyOf,
    Criterion,
    DateCriterion,
    IdCriterion,
    MissingCriterion,
    NumberCriterion,
    RangeValue,
    ReferenceCriterion,
    StringCriterion,
    TokenCriterion,
    UriCriterion,
)
from hub.fhir.repository import IndexValues, SearchSpec
from hub.fhir.search_values import prefix_upper_bound, range_rule


def range_matches(prefix: str, low: float, high: float, value: RangeValue, *, exact: float | None = None) -> bool:
    """Whether a stored range [low, high] matches a searched value (:func:`range_rule`)."""
    return bool(range_rule(prefix, low, high, value.low, value.high, exact))


def _matches(criterion: Criterion, resource_id: str, index: IndexValues) -> bool:
    if isinstance(criterion, IdCriterion):
        return (resource_id in criterion.ids) != criterion.negate
    if isinstance(criterion, TokenCriterion):
        rows = [t for t in index.tokens if t.param == criterion.param]
        found = any(
            (system is None or t.system == system) and (code is None or t.value == code)
            for system, code in criterion.values for t in rows
        )
        return found != criterion.negate
    if isinstance(criterion, StringCriterion):
        rows = [s for s in index.strings if s.param == criterion.param]
        if criterion.mode == "exact":
            return any(s.exact == v for v in criterion.values for s in rows)
        if criterion.mode == "contains":
            return any(v in s.normalized for v in criterion.values for s in rows)
        return any(v <= s.normalized < prefix_upper_bound(v) for v in criterion.values for s in rows)
    if isinstance(criterion, DateCriterion):
        combine = all if criterion.all_of else any
        return any(combine(range_matches(v.prefix, d.low, d.high, v) for v in criterion.values)
                   for d in index.dates if d.param == criterion.param)
    if isinstance(criterion, NumberCriterion):
        combine = all if criterion.all_of else any
        return any(
            combine(
                range_matches(v.prefix, n.low, n.high, v, exact=v.value)
                and (v.system is None or n.system == v.system) and (v.code is None or n.code == v.code)
                for v in criterion.values
            )
            for n in index.numbers if n.param == criterion.param
        )
    if isinstance(criterion, UriCriterion):
        rows = [u.value for u in index.uris if u.param == criterion.param]
        if criterion.mode == "below":
            return any(r.startswith(v) for v in criterion.values for r in rows)
        if criterion.mode == "above":
            return any(v.startswith(r) for v in criterion.values for r in rows)
        return any(r in criterion.values for r in rows)
    if isinstance(criterion, ReferenceCriterion):
        return any(
            (r.url == v.url) if v.url else (
                r.target_id == v.target_id and (r.target_type == v.target_type if v.target_type
                                                else not criterion.targets or r.target_type in criterion.targets))
            for v in criterion.values for r in index.references if r.param == criterion.param
        )
    if isinstance(criterion, MissingCriterion):
        rows = {"token": index.tokens, "string": index.strings, "date": index.dates, "number": index.numbers,
                "uri": index.uris, "reference": index.references}[criterion.table]
        return (not any(r.param == criterion.param for r in rows)) == criterion.missing
    if isinstance(criterion, AnyOf):
        return any(_matches(c, resource_id, index) for c in criterion.alternatives)
    if isinstance(criterion, AllOf):
        return all(_matches(c, resource_id, index) for c in criterion.criteria)
    raise NotSupported(
        "This conditional search cannot be matched against resources written in the same transaction "
        "(chains, _has and _lastUpdated need stored resources)"
    )


def matches_in_memory(spec: SearchSpec, resource_id: str, index: IndexValues) -> bool:
    """Whether a resource not yet stored (id + extracted index values) matches ``spec``."""
    return all(_matches(c, resource_id, index) for c in spec.criteria)
