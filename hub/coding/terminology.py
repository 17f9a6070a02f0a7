"""The terminology operations over the CodeSystems, ValueSets and ConceptMaps stored in the hub.

``$lookup``, ``$validate-code`` (CodeSystem and ValueSet), ``$expand``, ``$translate`` and
``$subsumes`` with R4 inputs and outputs. Resources are found by canonical URL through
the FHIR service (so the caller's access applies) and parsed once per stored version
(:class:`TerminologyCache`, shared by a process).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.conceptmaps import translate, translate_parameters
from hub.coding.valuesets import Expander, Member, text_matches
from hub.errors import InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.fhir.parameters import OperationInput, parameters, part
from hub.fhir.repository import StoredResource
from hub.fhir.service import FhirService
from hub.privacy import clip

#: Largest page of an expansion.
MAX_EXPANSION_PAGE = 1000


def escape(value: str) -> str:
    """A search value with FHIR's special characters escaped, URL-encoded for a query string."""
    for char in ("\\", ",", "$", "|"):
        value = value.replace(char, "\\" + char)
    return quote(value, safe=":/.")


class TerminologyCache:
    """Parsed code systems and full expansions by stored version (thread-safe, bounded)."""

    def __init__(self, limit: int = 512) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The cached value of ``key``, built on first use."""
        with self._lock:
            if key in self._items:
                return self._items[key]
        value = build()
        with self._lock:
            if len(self._items) >= self.limit:
                self._items.clear()
            self._items[key] = value
        return value


#: One cache per process: code systems parsed once per stored version.
PROCESS_CACHE = TerminologyCache()


class Terminology:
    """The terminology operations inside one unit of work."""

    def __init__(self, service: FhirService, cache: TerminologyCache,
                 system_aliases: Callable[[str], list[str]] | None = None) -> None:
        self.service = service
        self.cache = cache
        #: Other source systems whose maps apply to a system (a source's codes → its vendor profile's maps).
        self.system_aliases = system_aliases or (lambda _system: [])
        self._stamp: tuple[Any, ...] | None = None

    # -- finding resources ---------------------------------------------------

    def _stored(self, resource_type: str, criteria: str, limit: int = 100) -> list[StoredResource]:
        spec = self.service.conditional_spec(resource_type, criteria)
        return [s for s in self.service.find_matches(spec, limit=limit) if s.content is not None]

    def _read(self, resource_type: str, resource_id: str) -> StoredResource:
        outcome = self.service.read(resource_type, resource_id)
        assert outcome.resource is not None and outcome.resource.content is not None
        return outcome.resource

    def parsed(self, stored: StoredResource) -> dict[str, Any]:
        """The JSON of a stored terminology resource, parsed once per version."""
        return self.cache.get(("json", *_version_key(stored)),
                              lambda: jsonio.loads_stored(stored.content or b"{}"))

    def _index(self, stored: StoredResource) -> CodeSystemIndex:
        return self.cache.get(("cs", *_version_key(stored)), lambda: CodeSystemIndex(self.parsed(stored)))

    def code_system(self, url: str, version: str | None = None) -> CodeSystemIndex | None:
        """The stored code system with canonical ``url`` (and ``version``), or None."""
        found = self._stored("CodeSystem", f"url={escape(url)}")
        if version:
            found = [s for s in found if self.parsed(s).get("version") == version]
        if not found:
            return None
        return self._index(max(found, key=lambda s: (str(self.parsed(s).get("version") or ""), s.id)))

    def require_code_system(self, url: str | None, version: str | None = None) -> CodeSystemIndex:
        """The code system, or 404 naming it."""
        if not url:
            raise InvalidRequest("The operation needs the code system (system or url)")
        index = self.code_system(url, version)
        if index is None:
            suffix = f" version {version}" if version else ""
            raise NotFound(f"CodeSystem '{clip(url, 100)}'{suffix} is not on this server")
        return index

    def value_set(self, url: str) -> dict[str, Any] | None:
        """The stored value set with canonical ``url`` (``url|version`` accepted), or None."""
        url, _, version = url.partition("|")
        found = [self.parsed(s) for s in self._stored("ValueSet", f"url={escape(url)}")]
        if version:
            found = [v for v in found if v.get("version") == version]
        return found[0] if found else None

    def concept_maps(self, *, url: str | None = None, source_system: str | None = None,
                     target_system: str | None = None) -> list[dict[str, Any]]:
        """The stored concept maps by canonical ``url`` or by a group's source (or target) system."""
        if url:
            url, _, version = url.partition("|")
            found = [self.parsed(s) for s in self._stored("ConceptMap", f"url={escape(url)}")]
            return [m for m in found if not version or m.get("version") == version]
        if source_system:
            systems = [source_system, *self.system_aliases(source_system)]
            maps = []
            for system in systems:
                maps.extend(self.parsed(s) for s in self._stored("ConceptMap", f"source-system={escape(system)}"))
            return maps
        if target_system:
            return [self.parsed(s) for s in self._stored("ConceptMap", f"target-system={escape(target_system)}")]
        raise InvalidRequest("$translate needs url, conceptMap, or the system of the code")

    def _expander(self) -> Expander:
        return Expander(self.code_system, self.value_set)

    def members(self, value_set: dict[str, Any], stored: StoredResource | None = None) -> list[Member]:
        """Every member of ``value_set``; cached for stored value sets until any code system changes."""
        if stored is None:
            return self._expander().members(value_set)
        if self._stamp is None:
            repository = self.service.repository
            self._stamp = (repository.type_stamp("CodeSystem"), repository.type_stamp("ValueSet"))
        return self.cache.get(("vs", *_version_key(stored), self._stamp),
                              lambda: self._expander().members(value_set))

    def _value_set_input(self, inp: OperationInput, resource_id: str | None) -> tuple[dict[str, Any],
                                                                                      StoredResource | None]:
        if resource_id:
            stored = self._read("ValueSet", resource_id)
            return self.parsed(stored), stored
        given = inp.resource("valueSet")
        if given is not None:
            if given.get("resourceType") != "ValueSet":
                raise InvalidRequest("The valueSet input must be a ValueSet")
            return given, None
        url = inp.text("url")
        if not url:
            raise InvalidRequest("The operation needs the value set: url, an id, or a valueSet resource")
        url, _, version = url.partition("|")
        found = [s for s in self._stored("ValueSet", f"url={escape(url)}")
                 if not version or self.parsed(s).get("version") == version]
        if not found:
            raise NotFound(f"ValueSet '{clip(url, 100)}' is not on this server")
        return self.parsed(found[0]), found[0]

    # -- operations -----------------------------------------------------------

    def lookup(self, inp: OperationInput) -> dict[str, Any]:
        """``CodeSystem/$lookup``: display, designations and properties of a code."""
        system, code, version = _coding_input(inp, "coding")
        index = self.require_code_system(system, version or inp.text("version"))
        concept = index.get(code or "")
        if concept is None:
            raise NotFound(f"Code '{clip(code or '', 60)}' is not in {index.name} ({index.url})")
        wanted = set(inp.texts("property"))
        props: list[dict[str, Any]] = []
        for name, values in (("parent", concept.parents), ("child", concept.children)):
            if not wanted or name in wanted:
                props.extend(part("property", {"name": "code", "valueCode": name},
                                  {"name": "value", "valueCode": v}) for v in values)
        for prop in concept.properties:
            if not wanted or prop.get("code") in wanted:
                value = {k: v for k, v in prop.items() if k.startswith("value")}
                props.append(part("property", {"name": "code", "valueCode": prop["code"]},
                                  {"name": "value", **value}))
        if concept.inactive and (not wanted or "inactive" in wanted):
            props.append(part("property", {"name": "code", "valueCode": "inactive"},
                              {"name": "value", "valueBoolean": True}))
        designations = [part("designation", ("language", None),
                             {"name": "language", "valueCode": d["language"]} if d.get("language") else None,
                             {"name": "use", "valueCoding": d["use"]} if d.get("use") else None,
                             ("value", d.get("value")))
                        for d in concept.designations]
        return parameters(("name", index.name), ("version", index.version), ("display", concept.display),
                          *designations, *props)

    def validate_code_system(self, inp: OperationInput, resource_id: str | None = None) -> dict[str, Any]:
        """``CodeSystem/$validate-code``: is the code in the system (and the display one of its names)?"""
        codings = _codings(inp, "url")
        if not codings:
            raise InvalidRequest("$validate-code needs code (with url), coding or codeableConcept")
        if resource_id:
            index = self._index(self._read("CodeSystem", resource_id))
            codings = [(s or index.url, c, d) for s, c, d in codings]
        else:
            url = inp.text("url") or next((s for s, _c, _d in codings if s and self.code_system(s) is not None),
                                          codings[0][0])
            index = self.require_code_system(url, inp.text("version"))
        messages = []
        for system, code, display in codings:
            if system != index.url:
                messages.append(f"{system}|{code}: not a code of {index.url}")
                continue
            concept = index.get(code)
            if concept is None:
                messages.append(f"Code '{code}' is not in {index.name} ({index.url})")
            elif display and not concept.accepts_display(display):
                messages.append(f"The display '{display}' is not a name of {code}; it is '{concept.display}'")
            else:
                note = f"Code '{code}' is retired in {index.name}" if concept.inactive else None
                return parameters(("result", True), ("message", note), ("display", concept.display))
        return parameters(("result", False), ("message", "; ".join(messages)))

    def validate_value_set(self, inp: OperationInput, resource_id: str | None = None) -> dict[str, Any]:
        """``ValueSet/$validate-code``: is the code a member of the value set?"""
        value_set, stored = self._value_set_input(inp, resource_id)
        codings = _codings(inp, "system")
        if not codings:
            raise InvalidRequest("$validate-code needs code (with system), coding or codeableConcept")
        members = {(m.system, m.code): m for m in self.members(value_set, stored)}
        messages = []
        for system, code, display in codings:
            member = members.get((system, code))
            if member is None:
                messages.append(f"{system}|{code} is not in the value set {value_set.get('url')}")
            elif display and not (member.concept.accepts_display(display) if member.concept
                                  else display == member.display):
                messages.append(f"The display '{display}' is not a name of {code}; it is '{member.display}'")
            else:
                return parameters(("result", True), ("display", member.display))
        return parameters(("result", False), ("message", "; ".join(messages)))

    def expand(self, inp: OperationInput, resource_id: str | None = None) -> dict[str, Any]:
        """``ValueSet/$expand`` with ``filter``, ``offset``, ``count``, ``activeOnly``, ``includeDesignations``."""
        value_set, stored = self._value_set_input(inp, resource_id)
        members = self.members(value_set, stored)
        text = inp.text("filter") or ""
        active_only = inp.boolean("activeOnly")
        designations = inp.boolean("includeDesignations")
        chosen = [m for m in members if (not active_only or not m.inactive) and text_matches(m, text)]
        offset = inp.integer("offset", 0, high=10**9)
        count = inp.integer("count", MAX_EXPANSION_PAGE, high=MAX_EXPANSION_PAGE)
        echoed: list[dict[str, Any]] = [{"name": "filter", "valueString": text}] if text else []
        if active_only:
            echoed.append({"name": "activeOnly", "valueBoolean": True})
        echoed += [{"name": "offset", "valueInteger": offset}, {"name": "count", "valueInteger": count}]
        expansion = {
            "identifier": f"urn:uuid:{uuid.uuid4()}",
            "timestamp": now_utc().isoformat(),
            "total": len(chosen),
            "offset": offset,
            "parameter": echoed,
            "contains": [m.as_contains(designations) for m in chosen[offset:offset + count]],
        }
        if not expansion["contains"]:
            del expansion["contains"]
        head = {k: value_set[k] for k in ("id", "url", "version", "name", "title", "status") if k in value_set}
        return {"resourceType": "ValueSet", **head, "expansion": expansion}

    def translate(self, inp: OperationInput, resource_id: str | None = None) -> dict[str, Any]:
        """``ConceptMap/$translate``: the targets of a code (or its sources with ``reverse``)."""
        codings = _codings(inp, "system")
        if not codings:
            raise InvalidRequest("$translate needs code (with system), coding or codeableConcept")
        reverse = inp.boolean("reverse")
        target_system = inp.text("targetsystem")
        inline = inp.resource("conceptMap")
        if resource_id:
            maps = [self.parsed(self._read("ConceptMap", resource_id))]
        elif inline is not None:
            if inline.get("resourceType") != "ConceptMap":
                raise InvalidRequest("The conceptMap input must be a ConceptMap")
            maps = [inline]
        elif inp.text("url"):
            maps = self.concept_maps(url=inp.text("url"))
            if not maps:
                raise NotFound(f"ConceptMap '{clip(inp.text('url') or '', 100)}' is not on this server")
        elif reverse:
            maps = self.concept_maps(target_system=codings[0][0])
        else:
            maps = self.concept_maps(source_system=codings[0][0])
        for wanted, key in ((inp.text("source"), "source"), (inp.text("target"), "target")):
            if wanted:
                maps = [m for m in maps if wanted in (m.get(f"{key}Uri"), m.get(f"{key}Canonical"))]
        maps = [m for m in maps if m.get("status") != "retired"]
        matches = []
        for system, code, _display in codings:
            systems = [system, *self.system_aliases(system)] if system and not reverse else [system]
            for each in systems:
                matches.extend(translate(maps, each, code, target_system=target_system, reverse=reverse,
                                         other_map=lambda url: next(iter(self.concept_maps(url=url)), None)))
        return translate_parameters(matches, codings[0][0], codings[0][1])

    def subsumes(self, inp: OperationInput, resource_id: str | None = None) -> dict[str, Any]:
        """``CodeSystem/$subsumes``: how code A relates to code B in the system's hierarchy."""
        a, b = inp.coding("codingA"), inp.coding("codingB")
        system = inp.text("system") or (a or {}).get("system") or (b or {}).get("system")
        index = (self._index(self._read("CodeSystem", resource_id)) if resource_id
                 else self.require_code_system(system, inp.text("version")))
        code_a = inp.text("codeA") or (a or {}).get("code")
        code_b = inp.text("codeB") or (b or {}).get("code")
        if not code_a or not code_b:
            raise InvalidRequest("$subsumes needs codeA and codeB (or codingA and codingB)")
        canonical = []
        for code in (str(code_a), str(code_b)):
            concept = index.get(code)
            if concept is None:
                raise InvalidRequest(f"Code '{clip(code, 60)}' is not in {index.name} ({index.url})")
            canonical.append(concept.code)
        return parameters({"name": "outcome", "valueCode": index.subsumption(*canonical)})


def _version_key(stored: StoredResource) -> tuple[Any, ...]:
    """What identifies a stored version for the cache (its time too: a database restored or rebuilt under the
    same process reuses ids and version numbers)."""
    return stored.resource_type, stored.id, stored.version_id, stored.last_updated


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    return value


def _coding(value: Any, name: str) -> tuple[str | None, str | None, str | None]:
    """(system, code, display) of a Coding input, its types checked."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{name} must be a Coding")
    return (_text(value.get("system"), f"{name}.system"), _text(value.get("code"), f"{name}.code"),
            _text(value.get("display"), f"{name}.display"))


def _coding_input(inp: OperationInput, coding_name: str) -> tuple[str | None, str | None, str | None]:
    coding = inp.coding(coding_name)
    if coding:
        system, code, _display = _coding(coding, coding_name)
        return system, code, _text(coding.get("version"), f"{coding_name}.version")
    return inp.text("system"), inp.text("code"), None


def _codings(inp: OperationInput, system_name: str) -> list[tuple[str | None, str, str | None]]:
    """(system, code, display) of ``code``+system, ``coding`` or each coding of ``codeableConcept``."""
    code = inp.text("code")
    if code:
        return [(inp.text(system_name) or inp.text("system"), code, inp.text("display"))]
    coding = inp.coding("coding")
    if coding:
        system, code, display = _coding(coding, "coding")
        return [(system, code, display)] if code else []
    concept = inp.coding("codeableConcept")
    if concept:
        listed = concept.get("coding") or []
        if not isinstance(listed, list):
            raise InvalidRequest("codeableConcept.coding must be a list")
        found = [_coding(c, "codeableConcept.coding") for c in listed]
        return [(s, c, d) for s, c, d in found if c]
    return []
