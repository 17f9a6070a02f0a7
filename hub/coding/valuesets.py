"""ValueSet expansion and membership (R4 ``compose``: include/exclude, concepts, filters, value sets)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.coding.codesystems import CodeSystemIndex, Concept
from hub.coding.text import fold, initials, pinyin
from hub.errors import InvalidRequest, NotFound, NotSupported
from hub.privacy import clip

#: Longest regex filter, and longest code it is matched against (bounding backtracking).
MAX_REGEX = 64
MAX_REGEX_SUBJECT = 32
#: (canonical url, version or None) → the code system index, or None when the hub does not hold it.
SystemResolver = Callable[[str, str | None], CodeSystemIndex | None]
#: canonical url → a ValueSet resource, or None.
ValueSetResolver = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class Member:
    """One code of an expansion."""

    system: str
    code: str
    display: str | None
    version: str | None = None
    inactive: bool = False
    concept: Concept | None = None

    def as_contains(self, designations: bool = False) -> dict[str, Any]:
        """The ``expansion.contains`` entry."""
        entry: dict[str, Any] = {"system": self.system}
        if self.version:
            entry["version"] = self.version
        if self.inactive:
            entry["inactive"] = True
        entry["code"] = self.code
        if self.display:
            entry["display"] = self.display
        if designations and self.concept is not None and self.concept.designations:
            entry["designation"] = self.concept.designations
        return entry


def _filter_codes(index: CodeSystemIndex, spec: dict[str, Any]) -> set[str]:
    prop, op, value = spec.get("property"), spec.get("op"), spec.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise InvalidRequest("A ValueSet filter needs property, op and value")
    if op in ("is-a", "descendent-of", "is-not-a", "generalizes") and prop == "concept":
        if value not in index.concepts:
            return set(index.concepts) if op == "is-not-a" else set()
        if op == "is-a":
            return {value} | index.descendants(value)
        if op == "descendent-of":
            return index.descendants(value)
        if op == "generalizes":
            return {value} | index.ancestors(value)
        return set(index.concepts) - ({value} | index.descendants(value))
    if op == "regex":
        # Only on codes (short), with a short pattern: a backtracking pattern over long displays would hold
        # the interpreter for minutes (anyone who may read can post a ValueSet to $expand).
        if prop not in ("code", "concept"):
            raise NotSupported("ValueSet regex filters are supported on the code only")
        if len(value) > MAX_REGEX:
            raise InvalidRequest(f"A regex filter may be at most {MAX_REGEX} characters")
        try:
            pattern = re.compile(value)
        except re.error:
            raise InvalidRequest(f"The filter regex '{clip(value, 60)}' is not valid") from None
        return {c for c in index.concepts if len(c) <= MAX_REGEX_SUBJECT and pattern.fullmatch(c)}
    if op in ("=", "in", "not-in"):
        wanted = {value} if op == "=" else {v.strip() for v in value.split(",")}

        def has(concept: Concept) -> bool:
            values = {str(v).lower() if isinstance(v, bool) else str(v) for v in concept.values(prop)}
            if prop in ("code", "concept"):
                values = {concept.code}
            return bool(values & wanted)

        matched = {c.code for c in index.concepts.values() if has(c)}
        return set(index.concepts) - matched if op == "not-in" else matched
    if op == "exists":
        present = {c.code for c in index.concepts.values() if c.values(prop)}
        return present if value == "true" else set(index.concepts) - present
    raise NotSupported(f"ValueSet filter op '{clip(op, 30)}' on property '{clip(prop, 40)}' is not supported")


class Expander:
    """Expands value sets with the code systems and value sets the hub holds."""

    def __init__(self, systems: SystemResolver, value_sets: ValueSetResolver) -> None:
        self.systems = systems
        self.value_sets = value_sets

    def members(self, value_set: dict[str, Any], _depth: int = 0) -> list[Member]:
        """Every member of ``value_set`` (its ``compose``; a stored ``expansion`` when it has none)."""
        if _depth > 10:
            raise InvalidRequest("ValueSets include each other too deeply (a cycle?)")
        compose = value_set.get("compose")
        if not isinstance(compose, dict):
            contains = (value_set.get("expansion") or {}).get("contains") or []
            if contains:
                return [Member(c["system"], c["code"], c.get("display"), c.get("version"), bool(c.get("inactive")))
                        for c in contains if c.get("system") and c.get("code")]
            raise InvalidRequest(f"ValueSet '{clip(str(value_set.get('url')), 100)}' has no compose to expand")
        found: dict[tuple[str, str], Member] = {}
        for part in (*(compose.get("include") or []), *(compose.get("exclude") or [])):
            _check_part(part)
        for include in compose.get("include") or []:
            for member in self._part(include, _depth):
                found.setdefault((member.system, member.code), member)
        excluded: set[tuple[str, str]] = set()
        for exclude in compose.get("exclude") or []:
            excluded.update((m.system, m.code) for m in self._part(exclude, _depth))
        inactive_ok = compose.get("inactive", True) is not False
        return [m for key, m in found.items() if key not in excluded and (inactive_ok or not m.inactive)]

    def _part(self, include: dict[str, Any], depth: int) -> list[Member]:
        sets: list[list[Member]] = []
        for canonical in include.get("valueSet") or []:
            included = self.value_sets(canonical)
            if included is None:
                raise NotFound(f"ValueSet '{clip(canonical, 100)}' is not on this server")
            sets.append(self.members(included, depth + 1))
        system = include.get("system")
        if system:
            index = self.systems(system, include.get("version"))
            if index is None:
                if include.get("concept") and not include.get("filter"):  # enumerated codes need no system
                    sets.append([Member(system, c["code"], c.get("display")) for c in include["concept"]])
                else:
                    raise NotFound(f"CodeSystem '{clip(system, 100)}' is not on this server")
            else:
                sets.append(self._from_system(index, include))
        if not sets:
            return []
        keys = set.intersection(*({(m.system, m.code) for m in s} for s in sets))
        return [m for m in sets[0] if (m.system, m.code) in keys]

    @staticmethod
    def _from_system(index: CodeSystemIndex, include: dict[str, Any]) -> list[Member]:
        listed = include.get("concept")
        if listed:
            members = []
            for item in listed:
                concept = index.get(item.get("code", ""))
                if concept is not None:
                    members.append(Member(index.url, concept.code, item.get("display") or concept.display,
                                          index.version, concept.inactive, concept))
            return members
        codes: set[str] | None = None
        for spec in include.get("filter") or []:
            matched = _filter_codes(index, spec)
            codes = matched if codes is None else codes & matched
        chosen = index.concepts.values() if codes is None else (index.concepts[c] for c in codes)
        return [Member(index.url, c.code, c.display, index.version, c.inactive, c) for c in chosen]


def _check_part(part: Any) -> None:
    """A compose include/exclude of the right shape (ValueSets may come inline from any caller)."""
    if not isinstance(part, dict):
        raise InvalidRequest("ValueSet.compose include and exclude entries must be objects")
    for name in ("concept", "filter", "valueSet"):
        if not isinstance(part.get(name, []), list):
            raise InvalidRequest(f"ValueSet.compose.include.{name} must be a list")
    if not all(isinstance(c, dict) and isinstance(c.get("code"), str) for c in part.get("concept") or []):
        raise InvalidRequest("Each ValueSet.compose.include.concept needs a code")
    if not all(isinstance(f, dict) for f in part.get("filter") or []):
        raise InvalidRequest("ValueSet.compose.include.filter entries must be objects")
    if not all(isinstance(v, str) for v in part.get("valueSet") or []):
        raise InvalidRequest("ValueSet.compose.include.valueSet entries must be canonical URLs")
    for name in ("system", "version"):
        if name in part and not isinstance(part[name], str):
            raise InvalidRequest(f"ValueSet.compose.include.{name} must be a string")


def text_matches(member: Member, wanted: str) -> bool:
    """The ``$expand`` ``filter``: code prefix, or display/designation/pinyin/initials containing the text."""
    folded = fold(wanted)
    if not folded:
        return True
    if member.code.casefold().startswith(folded):
        return True
    if member.concept is None:
        return bool(member.display and folded in fold(member.display))
    return any(folded in fold(name) or folded in pinyin(name) or initials(name).startswith(folded)
               for name in member.concept.names())
