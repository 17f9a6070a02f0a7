"""The search-parameter registry: which parameters exist, for which types, and how to index them.

Built from the official R4 definitions (``definitions/search-parameters.json``, HL7
FHIR 4.0.1, CC0) plus the active ``SearchParameter`` resources stored in the hub
(custom parameters are data, not code). Each parameter resolves, per resource type, to
a storage strategy (its ``type``) and a compiled expression (:mod:`hub.fhir.fhirpath`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import orjson

from hub.fhir.fhirpath import Expression, UnsupportedExpression, compile_expression
from hub.fhir.repository import FhirRepository
from hub.fhir.resource_types import load_definition, resource_types
from hub.fhir.subsetting import element_table

log = logging.getLogger(__name__)

#: Parameter types with an index table (composites index into their last component's table).
INDEXED_TYPES = ("token", "string", "date", "reference", "quantity", "number", "uri", "composite")
#: Parameters handled by the resource table itself, not by expressions.
RESOURCE_COLUMNS = ("_id", "_lastUpdated")
#: Types that are not DomainResources (the DomainResource parameters skip them).
_NOT_DOMAIN = {"Bundle", "Binary", "Parameters"}


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: the parameter it is, and where it is under the root."""

    param: SearchParam
    expression: Expression


@dataclass(frozen=True)
class SearchParam:
    """A search parameter as it applies to one resource type."""

    code: str
    type: str
    url: str
    resource_type: str
    #: None when the expression is outside the supported subset (the parameter is refused).
    expression: Expression | None
    #: Why the parameter cannot be searched, when it cannot.
    unsupported: str | None = None
    targets: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    #: Top-level elements one of which a resource needs for the parameter to have a value (None: unknown).
    first_names: frozenset[str] | None = None
    #: At most one value per resource (one non-repeating element): ANDed values may share one index row.
    single_valued: bool = False
    #: Parameters whose values together are exactly this one's (``combo-code`` = ``code`` +
    #: ``component-code``): it is searched through their index rows and writes none itself.
    union_of: tuple[SearchParam, ...] = ()

    @property
    def searchable(self) -> bool:
        """Whether searches on this parameter are answered."""
        return self.unsupported is None


def _bases(definition: Mapping[str, Any]) -> list[str]:
    every = sorted(resource_types())
    out: list[str] = []
    for base in definition.get("base") or ():
        if base == "Resource":
            out.extend(every)
        elif base == "DomainResource":
            out.extend(t for t in every if t not in _NOT_DOMAIN)
        elif base in resource_types():
            out.append(base)
    return out


def _shape(param: SearchParam) -> tuple[object, ...]:
    """What must be equal for one parameter to be part of another: type and components."""
    return (param.type, tuple((c.param.type, c.expression.texts) for c in param.components))


def _find_unions(params: dict[str, SearchParam]) -> None:
    """Mark parameters whose paths are exactly the paths of two others of the same shape.

    R4 defines such pairs on Observation (``combo-code`` = ``code`` | ``component-code``,
    and the combo composites): indexing them again would double the rows of every
    Observation for nothing.
    """
    candidates = [p for p in params.values()
                  if p.expression is not None and p.searchable and p.type not in ("reference", "composite")
                  or p.type == "composite" and p.searchable]
    for param in candidates:
        texts = param.expression.texts if param.expression else frozenset()
        if len(texts) < 2:
            continue
        parts = [p for p in candidates if p is not param and _shape(p) == _shape(param) and p.expression
                 and p.expression.texts < texts]
        for index, first in enumerate(parts):
            for second in parts[index + 1:]:
                assert first.expression is not None and second.expression is not None
                if first.expression.texts | second.expression.texts == texts and \
                        not first.expression.texts & second.expression.texts:
                    params[param.code] = replace(param, union_of=(first, second), single_valued=False)
                    break
            if params[param.code].union_of:
                break


def _single_valued(resource_type: str, expression: Expression) -> bool:
    """Whether every path reads the same top-level element, which does not repeat."""
    firsts = {path.first for path in expression.paths}
    if len(firsts) != 1 or not all(path.direct for path in expression.paths):
        return False
    first = next(iter(firsts))
    infos = [info for info in element_table(resource_type).values() if info.base == first]
    return bool(infos) and not any(info.repeats for info in infos)


def _composite_first_names(root: Expression, components: list[Component]) -> frozenset[str] | None:
    """The elements a composite needs: its roots', or its value component's when rooted at the resource."""
    names: set[str] = set()
    for path in root.paths:
        inner = components[1].expression.first_names if not path.steps else (
            frozenset({path.first}) if path.first else None)
        if inner is None:
            return None
        names |= inner
    return frozenset(names)


class SearchRegistry:
    """Search parameters per resource type (immutable; build a new one to change it)."""

    def __init__(self, definitions: Iterable[Mapping[str, Any]]) -> None:
        self._definitions = list(definitions)
        self._by_url = {d["url"]: d for d in self._definitions if isinstance(d.get("url"), str)}
        self._params: dict[str, dict[str, SearchParam]] = {}
        self._compiled: dict[str, Expression | str] = {}
        self._indexed: dict[str, list[SearchParam]] = {}
        for definition in self._definitions:
            for resource_type in _bases(definition):
                param = self._build(definition, resource_type)
                if param is not None:
                    self._params.setdefault(resource_type, {})[param.code] = param
        for params in self._params.values():
            _find_unions(params)

    def _compile(self, text: str) -> Expression | str:
        if text not in self._compiled:
            try:
                self._compiled[text] = compile_expression(text)
            except UnsupportedExpression as exc:
                self._compiled[text] = str(exc)
        return self._compiled[text]

    def _build(self, definition: Mapping[str, Any], resource_type: str, depth: int = 0) -> SearchParam | None:
        code, kind, url = definition.get("code"), definition.get("type"), definition.get("url", "")
        if not isinstance(code, str) or not isinstance(kind, str):
            return None
        targets = tuple(t for t in definition.get("target") or () if t in resource_types())
        if code in RESOURCE_COLUMNS:
            return SearchParam(code, kind, url, resource_type, None, None, targets)
        text = definition.get("expression")
        if kind not in INDEXED_TYPES or not isinstance(text, str) or not text.strip():
            return SearchParam(code, kind, url, resource_type, None, f"{code} ({kind}) is not supported", targets)
        compiled = self._compile(text)
        if isinstance(compiled, str):
            return SearchParam(code, kind, url, resource_type, None, f"{code}: {compiled}", targets)
        expression = compiled.for_type(resource_type)
        if not expression.paths:
            return None
        components: list[Component] = []
        unsupported = None
        if kind == "composite":
            components, unsupported = self._components(definition, resource_type, depth)
        first_names = _composite_first_names(expression, components) if components else expression.first_names
        return SearchParam(code, kind, url, resource_type, expression, unsupported, targets, tuple(components),
                           first_names, not components and _single_valued(resource_type, expression))

    def _components(
        self, definition: Mapping[str, Any], resource_type: str, depth: int
    ) -> tuple[list[Component], str | None]:
        code = definition["code"]
        parts = definition.get("component") or []
        if len(parts) != 2 or depth > 0:
            return [], f"{code}: only two-part composites are supported"
        components = []
        for part in parts:
            target = self._by_url.get(part.get("definition", ""))
            compiled = self._compile(part.get("expression", ""))
            if target is None or isinstance(compiled, str):
                return [], f"{code}: a component cannot be resolved"
            param = self._build(target, resource_type, depth + 1)
            if param is None or param.type in ("composite", "reference"):
                return [], f"{code}: component type is not supported"
            components.append(Component(param, compiled))
        if components[0].param.type != "token":
            return [], f"{code}: the first component must be a token"
        return components, None

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        """The parameter ``code`` of ``resource_type``, or None if it does not exist."""
        return self._params.get(resource_type, {}).get(code)

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        """Every parameter of ``resource_type`` by code."""
        return self._params.get(resource_type, {})

    def indexed(self, resource_type: str) -> list[SearchParam]:
        """The parameters of ``resource_type`` whose values are extracted on write."""
        found = self._indexed.get(resource_type)
        if found is None:
            found = [p for p in self.for_type(resource_type).values()
                     if p.expression is not None and p.searchable and not p.union_of]
            self._indexed[resource_type] = found
        return found

    def with_custom(self, resources: Iterable[Mapping[str, Any]]) -> SearchRegistry:
        """A registry that adds (or replaces, by url or base+code) these SearchParameter resources."""
        custom = [r for r in resources if r.get("status") in ("active", "draft") and r.get("code")]
        if not custom:
            return self
        replaced_urls = {r.get("url") for r in custom}
        replaced_codes = {(b, r["code"]) for r in custom for b in r.get("base") or ()}
        kept = [
            d for d in self._definitions
            if d.get("url") not in replaced_urls and not any((b, d.get("code")) in replaced_codes for b in d["base"])
        ]
        return SearchRegistry([*kept, *custom])


@lru_cache(maxsize=1)
def base_registry() -> SearchRegistry:
    """The registry of the official R4 parameters."""
    bundle = orjson.loads(load_definition("search-parameters.json"))
    return SearchRegistry(entry["resource"] for entry in bundle["entry"])


def search_parameter_problem(resource: Mapping[str, Any]) -> str | None:
    """Why a SearchParameter resource cannot be indexed by the hub (None if it can)."""
    kind = resource.get("type")
    if kind not in INDEXED_TYPES:
        return f"type '{kind}' is not indexed"
    expression = resource.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        return "it has no expression"
    try:
        compile_expression(expression)
    except UnsupportedExpression as exc:
        return str(exc)
    return None


class SearchParameters:
    """The registry in use by one server: the official parameters plus the stored custom ones.

    Shared by every unit of work of a process. A write of a ``SearchParameter`` in this
    process takes effect at once (:meth:`invalidate`); other processes notice within
    :attr:`refresh_seconds` (a cheap check of the SearchParameter resources' count and
    latest change).
    """

    def __init__(self, refresh_seconds: float = 5.0) -> None:
        self.refresh_seconds = refresh_seconds
        #: Built at first use (the official registry takes seconds to build; commands that never search skip it).
        self._registry: SearchRegistry | None = None
        self._stamp: object = None
        self._checked = float("-inf")
        self._watch_until = float("-inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """A SearchParameter is being written: check the store at every use for a while.

        (The write commits after this call; until then the store still shows the old state.)
        """
        self._watch_until = time.monotonic() + self.refresh_seconds

    def current(self, repository: FhirRepository) -> SearchRegistry:
        """The registry, refreshed from ``repository`` when stored parameters changed."""
        now = time.monotonic()
        registry = self._registry
        if registry is not None and now - self._checked < self.refresh_seconds and now > self._watch_until:
            return registry
        with self._lock:
            stamp = repository.type_stamp("SearchParameter")
            if stamp != self._stamp or self._registry is None:
                self._registry = base_registry().with_custom(self._stored(repository))
                self._stamp = stamp
            self._checked = now
            return self._registry  # type: ignore[return-value]  # set just above

    def _stored(self, repository: FhirRepository) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            batch = repository.current_batch("SearchParameter", after, 500)
            for stored in batch:
                resource = orjson.loads(stored.content or b"{}")
                problem = search_parameter_problem(resource)
                if problem is None:
                    found.append(resource)
                else:
                    log.warning("SearchParameter/%s is not used: %s", stored.id, problem)
            if len(batch) < 500:
                return found
            after = batch[-1].pk
