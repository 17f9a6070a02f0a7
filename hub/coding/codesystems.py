"""A CodeSystem resource indexed for lookup, hierarchy and validation.

Concepts may be nested (``concept.concept``) or flat with the standard ``parent``
property; both give the same hierarchy. A concept is inactive when its ``status``
property is ``retired``/``inactive`` or its ``inactive`` property is true.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.coding.text import fold

#: Extension on a CodeSystem: numeric codes are zero-padded to this width.
PAD_EXTENSION = "urn:hub:extension:code-zero-pad"
_VALUE_KEYS = ("valueCode", "valueString", "valueBoolean", "valueInteger", "valueDecimal", "valueCoding",
               "valueDateTime")


@dataclass
class Concept:
    """One concept of a code system."""

    code: str
    display: str | None
    definition: str | None = None
    designations: list[dict[str, Any]] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    inactive: bool = False

    def values(self, name: str) -> list[Any]:
        """The values of property ``name`` (``parent`` and ``child`` included)."""
        if name == "parent":
            return list(self.parents)
        if name == "child":
            return list(self.children)
        out = []
        for prop in self.properties:
            if prop.get("code") == name:
                out.extend(prop[k] for k in _VALUE_KEYS if k in prop)
        return out

    def names(self) -> list[str]:
        """Display and every designation value."""
        names = [self.display] if self.display else []
        names.extend(d["value"] for d in self.designations if d.get("value"))
        return names

    def accepts_display(self, display: str) -> bool:
        """Whether ``display`` is this concept's display or a designation (width/space/case folded)."""
        wanted = fold(display)
        return any(fold(name) == wanted for name in self.names())


def _inactive(properties: list[dict[str, Any]]) -> bool:
    for prop in properties:
        if prop.get("code") == "status" and prop.get("valueCode") in ("retired", "inactive", "deprecated"):
            return True
        if prop.get("code") == "inactive" and prop.get("valueBoolean") is True:
            return True
    return False


class CodeSystemIndex:
    """Concepts by code with parents and children, built once per stored version."""

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource_id: str = resource.get("id", "")
        self.url: str = resource.get("url", "")
        self.version: str | None = resource.get("version")
        self.name: str = resource.get("title") or resource.get("name") or self.url
        self.case_sensitive: bool = resource.get("caseSensitive", True) is not False
        #: Numeric codes are zero-padded to this width (GB/T 3304 accepts ``1`` for ``01``).
        self.pad = next((int(e.get("valueInteger", 0)) for e in resource.get("extension") or []
                         if e.get("url") == PAD_EXTENSION), 0)
        self.concepts: dict[str, Concept] = {}
        self._folded: dict[str, str] = {}
        self._add(resource.get("concept") or [], None)
        for concept in self.concepts.values():
            for parent in concept.parents:
                if parent in self.concepts and concept.code not in self.concepts[parent].children:
                    self.concepts[parent].children.append(concept.code)

    def _add(self, concepts: list[dict[str, Any]], parent: str | None) -> None:
        for raw in concepts:
            properties = list(raw.get("property") or [])
            parents = [p["valueCode"] for p in properties if p.get("code") == "parent" and "valueCode" in p]
            if parent is not None and parent not in parents:
                parents.insert(0, parent)
            concept = Concept(
                code=raw["code"], display=raw.get("display"), definition=raw.get("definition"),
                designations=list(raw.get("designation") or []),
                properties=[p for p in properties if p.get("code") not in ("parent", "child")],
                parents=parents, inactive=_inactive(properties),
            )
            self.concepts[concept.code] = concept
            self._folded.setdefault(concept.code.casefold(), concept.code)
            self._add(raw.get("concept") or [], concept.code)

    def get(self, code: str) -> Concept | None:
        """The concept with ``code`` (case-insensitively when the system is not case-sensitive)."""
        found = self.concepts.get(code)
        if found is None and self.pad and code.isdigit() and len(code) < self.pad:
            found = self.concepts.get(code.zfill(self.pad))
        if found is None and not self.case_sensitive:
            canonical = self._folded.get(code.casefold())
            found = self.concepts.get(canonical) if canonical else None
        return found

    def ancestors(self, code: str) -> set[str]:
        """Every concept above ``code``."""
        seen: set[str] = set()
        stack = list(self.concepts[code].parents) if code in self.concepts else []
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.concepts[current].parents if current in self.concepts else [])
        return seen

    def descendants(self, code: str) -> set[str]:
        """Every concept below ``code``."""
        seen: set[str] = set()
        stack = list(self.concepts[code].children) if code in self.concepts else []
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.concepts[current].children)
        return seen

    def subsumption(self, code_a: str, code_b: str) -> str:
        """R4 ``$subsumes`` outcome of A against B."""
        if code_a == code_b:
            return "equivalent"
        if code_a in self.ancestors(code_b):
            return "subsumes"
        if code_b in self.ancestors(code_a):
            return "subsumed-by"
        return "not-subsumed"
