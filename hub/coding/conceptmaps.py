"""ConceptMap ``$translate`` with R4 semantics: equivalence, ``unmapped`` handling, ``reverse``.

``result`` is true when at least one match carries an equivalence other than
``unmatched`` or ``disjoint`` (those say the code has *no* counterpart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hub.fhir.parameters import parameters, part

NEGATIVE = frozenset({"unmatched", "disjoint"})
EQUIVALENCES = frozenset({"relatedto", "equivalent", "equal", "wider", "subsumes", "narrower", "specializes",
                          "inexact", "unmatched", "disjoint"})
#: The extension on a ConceptMap target holding the hub's row status (``active``/``draft``/``retired``).
STATUS_EXTENSION = "urn:hub:extension:mapping-status"


@dataclass(frozen=True)
class Match:
    """One translation."""

    equivalence: str
    system: str | None
    code: str | None
    display: str | None
    source: str
    comment: str | None = None

    def as_part(self) -> dict[str, Any]:
        """The ``match`` output parameter."""
        coding: dict[str, Any] | None = None
        if self.code:
            coding = {"system": self.system, "code": self.code}
            if self.display:
                coding["display"] = self.display
        return part("match", ("concept", coding), {"name": "source", "valueUri": self.source} if self.source else None,
                    ("comment", self.comment) if self.comment else None,
                    {"name": "equivalence", "valueCode": self.equivalence})


def target_status(target: dict[str, Any]) -> str:
    """A target's row status (``active`` when not stated)."""
    for extension in target.get("extension") or []:
        if extension.get("url") == STATUS_EXTENSION:
            return str(extension.get("valueCode") or "active")
    return "active"


def _source_of(concept_map: dict[str, Any]) -> str:
    """The map a match came from (``url|version``; empty for an inline map without url or id)."""
    url = concept_map.get("url") or (f"ConceptMap/{concept_map['id']}" if concept_map.get("id") else "")
    return f"{url}|{concept_map['version']}" if url and concept_map.get("version") else url


def translate(
    concept_maps: Iterable[dict[str, Any]],
    system: str | None,
    code: str,
    *,
    target_system: str | None = None,
    reverse: bool = False,
    other_map: Callable[[str], dict[str, Any] | None] | None = None,
) -> list[Match]:
    """The matches of ``system|code`` in ``concept_maps`` (only active rows)."""
    matches: list[Match] = []
    for concept_map in concept_maps:
        source = _source_of(concept_map)
        for group in concept_map.get("group") or []:
            here, there = (group.get("target"), group.get("source")) if reverse else (group.get("source"),
                                                                                     group.get("target"))
            if system and here and here != system:
                continue
            if target_system and there and there != target_system:
                continue
            found = _in_group(group, code, there, source, reverse)
            if not found and not reverse:
                found = _unmapped(group, system, code, there, source, target_system, other_map)
            matches.extend(found)
    return matches


def _in_group(group: dict[str, Any], code: str, there: str | None, source: str, reverse: bool) -> list[Match]:
    found = []
    for element in group.get("element") or []:
        for target in element.get("target") or []:
            if target_status(target) != "active":
                continue
            if reverse:
                if target.get("code") == code:
                    found.append(Match(target.get("equivalence", "equivalent"), there, element.get("code"),
                                       element.get("display"), source, target.get("comment")))
            elif element.get("code") == code:
                found.append(Match(target.get("equivalence", "equivalent"), there, target.get("code"),
                                   target.get("display"), source, target.get("comment")))
    return found


def _unmapped(
    group: dict[str, Any], system: str | None, code: str, there: str | None, source: str,
    target_system: str | None, other_map: Callable[[str], dict[str, Any] | None] | None,
) -> list[Match]:
    unmapped = group.get("unmapped")
    if not isinstance(unmapped, dict):
        return []
    mode = unmapped.get("mode")
    if mode == "provided":
        return [Match("equal", there, code, None, source)]
    if mode == "fixed" and unmapped.get("code"):
        return [Match("inexact", there, unmapped["code"], unmapped.get("display"), source)]
    if mode == "other-map" and unmapped.get("url") and other_map is not None:
        referenced = other_map(unmapped["url"])
        if referenced is not None:
            return translate([referenced], system, code, target_system=target_system)
    return []


def translate_parameters(matches: list[Match], system: str | None, code: str) -> dict[str, Any]:
    """The ``$translate`` output for ``matches``."""
    result = any(m.equivalence not in NEGATIVE for m in matches)
    if result:
        message = None
    elif matches:
        message = f"{system or ''}|{code} is mapped as having no counterpart ({matches[0].equivalence})"
    else:
        message = f"No mapping found for {system or ''}|{code}"
    return parameters(("result", result), ("message", message), *(m.as_part() for m in matches))
