"""Search result subsetting: ``_summary`` and ``_elements`` (FHIR R4 search.html#summary, #elements).

Subsetting works on a stored resource's JSON bytes: parse (decimals and big integers kept
exact, see :mod:`hub.fhir.jsonio`), filter the top-level keys, serialize. Nested elements
are kept whole. Which top-level elements are "summary" (``isSummary``) or mandatory
(``min >= 1``) comes from the fhir.resources R4B model metadata, read once per resource
type: ``summary_element_property`` in a field's ``json_schema_extra`` marks summary
elements; a required field, ``element_required`` or ``one_of_many_required`` marks
mandatory ones. Choice elements (``value[x]``) share their base name (``one_of_many``),
and a primitive's extension key (``_birthDate``) follows its element (``birthDate``).

A resource that lost anything is tagged ``SUBSETTED`` (once) so it is not mistaken for
the complete resource.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple

from fhir.resources.R4B import get_fhir_model_class

from hub.errors import InvalidRequest
from hub.fhir.jsonio import dumps, loads_stored
from hub.privacy import clip

SUMMARY_MODES = ("true", "text", "data", "false", "count")
SUBSETTED_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
SUBSETTED_TAG = {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "Resource encoded in summary mode"}

_ELEMENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
#: Kept in every mode (base names).
_ALWAYS = frozenset({"resourceType", "id", "meta"})


class ElementInfo(NamedTuple):
    """What the R4 definition says about one top-level JSON key of a resource."""

    base: str  # element name as listed in _elements: "value" for valueQuantity, "status" for _status
    summary: bool
    mandatory: bool
    #: Whether the element is a list (max cardinality above 1).
    repeats: bool = False


@dataclass(frozen=True)
class ElementSelection:
    """A parsed ``_elements`` value: plain names apply to every type, ``Type.name`` ones to that type only."""

    common: frozenset[str] = frozenset()
    by_type: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def names_for(self, resource_type: str) -> frozenset[str]:
        """The element names selected for a resource of ``resource_type``."""
        return self.common | self.by_type.get(resource_type, frozenset())


def parse_summary(value: str) -> str:
    """Validate a ``_summary`` value: one of true, text, data, false, count. Raises InvalidRequest."""
    if value not in SUMMARY_MODES:
        raise InvalidRequest(f"Parameter _summary must be true, text, data, false or count, got '{clip(value, 40)}'")
    return value


def parse_elements(value: str, resource_types: Collection[str]) -> ElementSelection:
    """Parse ``_elements``: comma-separated ``name`` or ``Type.name`` items.

    ``resource_types`` are the types a ``Type.`` prefix may name (e.g. the searched types).
    Raises InvalidRequest on an empty list, a malformed name or an unexpected type.
    """
    common: set[str] = set()
    by_type: dict[str, set[str]] = {}
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        prefix, dot, name = item.rpartition(".")
        if not _ELEMENT_NAME.match(name) or (dot and not _TYPE_NAME.match(prefix)):
            raise InvalidRequest(f"Parameter _elements has an invalid element name '{clip(item, 80)}'")
        if not dot:
            common.add(name)
        elif prefix not in resource_types:
            raise InvalidRequest(f"Parameter _elements names '{clip(item, 80)}', but {prefix} is not searched here")
        else:
            by_type.setdefault(prefix, set()).add(name)
    if not common and not by_type:
        raise InvalidRequest("Parameter _elements needs at least one element name")
    return ElementSelection(frozenset(common), {t: frozenset(names) for t, names in by_type.items()})


@lru_cache(maxsize=256)
def element_table(resource_type: str) -> Mapping[str, ElementInfo]:
    """Top-level JSON keys of ``resource_type`` (each ``value[x]`` expansion and ``_x`` key included).

    Empty for a type fhir.resources does not know.
    """
    try:
        model = get_fhir_model_class(resource_type)
    except ValueError:
        return {}
    table: dict[str, ElementInfo] = {}
    extension_keys: list[str] = []
    for info in model.model_fields.values():
        key = info.alias
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not key:
            continue
        if key.startswith("_"):
            extension_keys.append(key)
            continue
        if not extra.get("element_property"):
            continue
        mandatory = info.is_required() or bool(extra.get("element_required") or extra.get("one_of_many_required"))
        base = extra.get("one_of_many") or key
        repeats = "List[" in str(info.annotation)
        table[key] = ElementInfo(str(base), bool(extra.get("summary_element_property")), mandatory, repeats)
    for key in extension_keys:
        if key[1:] in table:
            table[key] = table[key[1:]]
    return table


def _info(table: Mapping[str, ElementInfo], key: str) -> ElementInfo:
    found = table.get(key)
    return found if found is not None else ElementInfo(key.lstrip("_"), False, False)


def _keep(key: str, info: ElementInfo, summary: str | None, names: frozenset[str] | None) -> bool:
    if key == "resourceType" or info.base in _ALWAYS:
        return True
    if summary == "true" and not info.summary:
        return False
    if summary == "text" and not (info.base == "text" or info.mandatory):
        return False
    if summary == "data" and info.base == "text":
        return False
    if names is not None and not (info.mandatory or info.base in names or key in names):
        return False
    return True


def _tag_subsetted(resource: dict[str, Any]) -> dict[str, Any]:
    meta = resource.get("meta")
    if not isinstance(meta, dict):  # place a new meta right after resourceType and id
        meta = {}
        head = {k: resource[k] for k in ("resourceType", "id") if k in resource}
        resource = {**head, "meta": meta, **{k: v for k, v in resource.items() if k not in head}}
    tags = meta.get("tag")
    if not isinstance(tags, list):
        tags = meta["tag"] = []
    for tag in tags:
        if isinstance(tag, dict) and tag.get("system") == SUBSETTED_SYSTEM and tag.get("code") == "SUBSETTED":
            return resource
    tags.append(dict(SUBSETTED_TAG))
    return resource


def subset(content: bytes, summary: str | None, elements: ElementSelection | None) -> bytes:
    """Return ``content`` (a stored resource's JSON) reduced per ``_summary`` and ``_elements``.

    summary ``true``: summary elements plus resourceType, id, meta (no text); ``text``: id,
    meta, text and mandatory elements; ``data``: everything but text; ``false``, ``count`` or
    None: no change. ``elements`` keeps the listed elements plus id, meta and mandatory ones.
    Given both, an element must pass both. Returns ``content`` itself when nothing is removed,
    otherwise new bytes with the SUBSETTED tag in ``meta.tag``.
    """
    mode = summary if summary in ("true", "text", "data") else None
    if mode is None and elements is None:
        return content
    resource = loads_stored(content)
    if not isinstance(resource, dict):
        return content
    resource_type = resource.get("resourceType")
    resource_type = resource_type if isinstance(resource_type, str) else ""
    table = element_table(resource_type)
    names = elements.names_for(resource_type) if elements is not None else None
    kept = {key: val for key, val in resource.items() if _keep(key, _info(table, key), mode, names)}
    if len(kept) == len(resource):
        return content
    return dumps(_tag_subsetted(kept))
