"""Search values extracted from resources on write (the store keeps them as index rows).

This foundation indexes what conditional interactions need: the ``identifier`` token
of every type that has one, with the expressions of the official R4 search-parameter
definitions. The full search-parameter registry builds on the same shape.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from hub.fhir.repository import IndexValues, TokenIndexValue
from hub.fhir.resource_types import load_definition


@lru_cache(maxsize=1)
def identifier_paths() -> dict[str, tuple[str, ...]]:
    """Resource type → the element paths of its ``identifier`` search parameter."""
    bundle = orjson.loads(load_definition("search-parameters.json"))
    paths: dict[str, list[str]] = {}
    for entry in bundle["entry"]:
        param = entry["resource"]
        if param.get("code") != "identifier" or param.get("type") != "token":
            continue
        for part in (param.get("expression") or "").split("|"):
            part = part.strip()
            head, _, rest = part.partition(".")
            if head in param["base"] and rest and all(seg.isidentifier() for seg in rest.split(".")):
                paths.setdefault(head, []).append(rest)
    return {t: tuple(p) for t, p in paths.items()}


def _values_at(node: Any, path: list[str]) -> list[Any]:
    current = [node]
    for segment in path:
        following: list[Any] = []
        for item in current:
            if isinstance(item, dict) and segment in item:
                value = item[segment]
                following.extend(value if isinstance(value, list) else [value])
        current = following
    return current


def extract_index(resource: dict[str, Any]) -> IndexValues:
    """The index values of ``resource`` (currently its identifiers)."""
    tokens: list[TokenIndexValue] = []
    for path in identifier_paths().get(resource["resourceType"], ()):
        for identifier in _values_at(resource, path.split(".")):
            if not isinstance(identifier, dict):
                continue
            value = identifier.get("value")
            if isinstance(value, str) and value:
                system = identifier.get("system")
                tokens.append(TokenIndexValue("identifier", system if isinstance(system, str) else "", value))
    return IndexValues(tokens=tuple(dict.fromkeys(tokens)))
