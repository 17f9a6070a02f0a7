"""SMART system scopes: ``system/<Type>.read|write`` (v1) and ``system/<Type>.cruds`` (v2).

A scope set becomes a grant map: resource type (or ``*``) → interaction letters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from hub.fhir.access import ALL_TYPES, INTERACTIONS
from hub.fhir.resource_types import resource_types

_SCOPE = re.compile(r"^system/(\*|[A-Z][A-Za-z]{1,63})\.(\*|read|write|[cruds]{1,5})$")
_V1 = {"read": "rs", "write": "cud", "*": INTERACTIONS}

Grants = dict[str, frozenset[str]]


class ScopeError(ValueError):
    """A scope string that is not a SMART system scope of a known type."""


def parse_scope(scope: str) -> tuple[str, frozenset[str]]:
    """``system/Observation.rs`` → ``("Observation", {"r", "s"})``."""
    match = _SCOPE.match(scope)
    if match is None:
        raise ScopeError(f"'{scope[:80]}' is not a system scope (system/<Type>.read|write|cruds)")
    resource_type, access = match.groups()
    if resource_type != ALL_TYPES and resource_type not in resource_types():
        raise ScopeError(f"'{scope[:80]}' names an unknown resource type")
    letters = _V1.get(access, access)
    if list(letters) != sorted(set(letters), key=INTERACTIONS.index):
        raise ScopeError(f"'{scope[:80]}': interaction letters go in the order c, r, u, d, s, each once")
    return resource_type, frozenset(letters)


def grants_of(scopes: Iterable[str]) -> Grants:
    """The grant map of ``scopes`` (each must parse)."""
    grants: Grants = {}
    for scope in scopes:
        resource_type, letters = parse_scope(scope)
        grants[resource_type] = grants.get(resource_type, frozenset()) | letters
    return grants


def format_grants(grants: Mapping[str, frozenset[str]]) -> list[str]:
    """Scope strings (v2 letters) for a grant map, ``*`` first."""
    ordered = sorted(grants, key=lambda t: (t != ALL_TYPES, t))
    return [f"system/{t}.{''.join(c for c in INTERACTIONS if c in grants[t])}" for t in ordered if grants[t]]


def allowed(grants: Mapping[str, frozenset[str]], resource_type: str) -> frozenset[str]:
    """The letters ``grants`` give on ``resource_type`` (its own plus the wildcard's)."""
    return grants.get(resource_type, frozenset()) | grants.get(ALL_TYPES, frozenset())


def intersect(requested: Mapping[str, frozenset[str]], ceiling: Mapping[str, frozenset[str]]) -> Grants:
    """What of ``requested`` the ``ceiling`` allows (a wildcard request is cut to each ceiling entry)."""
    out: Grants = {}
    for resource_type, letters in requested.items():
        if resource_type == ALL_TYPES:
            for ceiling_type, ceiling_letters in ceiling.items():
                kept = letters & ceiling_letters
                if kept:
                    out[ceiling_type] = out.get(ceiling_type, frozenset()) | kept
        else:
            kept = letters & allowed(ceiling, resource_type)
            if kept:
                out[resource_type] = out.get(resource_type, frozenset()) | kept
    return out
