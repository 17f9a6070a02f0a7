"""The FHIRPath subset used by search-parameter expressions, compiled to fast walkers.

Index extraction runs on every write, so each expression is compiled once into a list
of steps over plain JSON (``dict``/``list``) rather than interpreted per resource (a
general FHIRPath engine costs tens of microseconds per expression; a resource type has
up to ~40 parameters). The subset covers every expression of the official R4
definitions the hub indexes:

* unions ``a | b`` and paths ``Type.a.b`` (choice elements ``value`` find
  ``valueQuantity``, ``valueString``…), ``[n]``;
* ``as(T)``, ``ofType(T)`` and the ``(path as T)`` form;
* ``where(resolve() is T)``, ``where(field='literal')``, ``extension('url')``;
* ``exists() and … != false`` (``Patient.deceased``: any value but ``false`` is true).

Anything else raises :class:`UnsupportedExpression`; such parameters are refused when
searched rather than silently matching nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

#: A value found by an expression, with its FHIR type when the JSON key told it (choice types).
Node = tuple[Any, str | None]
Step = Callable[[list[Node]], list[Node]]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_AS_FORM = re.compile(r"^\((.+?)\s+as\s+([A-Za-z]+)\)(.*)$")
_INDEX = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]$")
_FUNCTION = re.compile(r"^([A-Za-z]+)\((.*)\)$")
_RESOLVE_IS = re.compile(r"^resolve\(\)\s+is\s+([A-Za-z]+)$")
_FIELD_EQUALS = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*'([^']*)'$")
_TYPE_FILTER = re.compile(r"^(as|ofType)\([A-Za-z]+\)$")
_DECEASED = re.compile(r"^([A-Za-z.]+)\.exists\(\)\s+and\s+\1\s*!=\s*false$")


class UnsupportedExpression(ValueError):
    """A FHIRPath expression outside the subset the hub compiles."""


def split_top_level(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` outside parentheses and quotes."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


#: FHIR data types: a key ``<name><Type>`` is the choice element ``<name>[x]`` (valueQuantity → value).
CHOICE_TYPES = frozenset("""
    Base64Binary Boolean Canonical Code Date DateTime Decimal Id Instant Integer Integer64 Markdown Oid PositiveInt
    String Time UnsignedInt Uri Url Uuid Address Age Annotation Attachment CodeableConcept Coding ContactPoint Count
    Distance Duration HumanName Identifier Money Period Quantity Range Ratio Reference SampledData Signature Timing
    ContactDetail Contributor DataRequirement Expression ParameterDefinition RelatedArtifact TriggerDefinition
    UsageContext Dosage Meta
""".split())


class _Choice(tuple):  # type: ignore[type-arg]
    """A choice element seen under its base name: ``(type suffix, value)``."""


#: key → (base name, type suffix) of a choice element, or None (keys repeat: computed once each).
_CHOICE_KEYS: dict[str, tuple[str, str] | None] = {}


def _choice_of(key: str) -> tuple[str, str] | None:
    found = _CHOICE_KEYS.get(key, False)
    if found is not False:
        return found  # type: ignore[return-value]
    found = None
    for position in range(1, len(key)):
        if key[position].isupper() and key[position:] in CHOICE_TYPES:
            found = (key[:position], key[position:])
            break
    if len(_CHOICE_KEYS) < 100_000:  # element names are few; arbitrary keys of bad input must not grow it forever
        _CHOICE_KEYS[key] = found
    return found


def prepare(node: Any) -> Any:
    """A copy of a resource where each choice element is also found under its base name.

    Done once per resource, so that paths such as ``Observation.value`` are plain
    dictionary lookups instead of a scan of every key.
    """
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            prepared = prepare(value) if isinstance(value, (dict, list)) else value
            out[key] = prepared
            choice = _choice_of(key)
            if choice is not None:
                out.setdefault(choice[0], _Choice((choice[1], prepared)))
        return out
    if isinstance(node, list):
        return [prepare(item) if isinstance(item, (dict, list)) else item for item in node]
    return node


def _child(name: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        out: list[Node] = []
        for value, _type in nodes:
            if not isinstance(value, dict):
                continue
            found = value.get(name)
            if found is None:
                continue
            kind = None
            if type(found) is _Choice:
                kind, found = found
            if isinstance(found, list):
                out.extend((item, kind) for item in found)
            else:
                out.append((found, kind))
        return out

    return step


def _of_type(type_name: str) -> Step:
    wanted = type_name[0].upper() + type_name[1:]

    def step(nodes: list[Node]) -> list[Node]:
        return [(v, t) for v, t in nodes if t is None or t == wanted]

    return step


def reference_type(reference: str) -> str | None:
    """The resource type named by a literal reference (``Patient/1``, ``http://…/Patient/1``)."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else None


def _resolves_to(type_name: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        out = []
        for value, kind in nodes:
            if not isinstance(value, dict):
                continue
            literal = value.get("reference")
            named = reference_type(literal) if isinstance(literal, str) else value.get("type")
            if named == type_name:
                out.append((value, kind))
        return out

    return step


def _field_equals(field: str, literal: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        return [(v, t) for v, t in nodes if isinstance(v, dict) and v.get(field) == literal]

    return step


def _index(position: int) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        return nodes[position : position + 1]

    return step


def _truthy(nodes: list[Node]) -> list[Node]:
    if not nodes:
        return []
    return [(not all(v is False for v, _t in nodes), "boolean")]


def _segment_steps(segment: str) -> list[Step]:
    segment = segment.strip()
    if _NAME.match(segment):
        return [_child(segment)]
    indexed = _INDEX.match(segment)
    if indexed:
        return [_child(indexed.group(1)), _index(int(indexed.group(2)))]
    call = _FUNCTION.match(segment)
    if call is None:
        raise UnsupportedExpression(f"unsupported path segment '{segment}'")
    function, argument = call.group(1), call.group(2).strip()
    if function in ("as", "ofType") and _NAME.match(argument):
        return [_of_type(argument)]
    if function == "extension" and re.fullmatch(r"'[^']*'", argument):
        return [_child("extension"), _field_equals("url", argument[1:-1])]
    if function == "where":
        resolve_is = _RESOLVE_IS.match(argument)
        if resolve_is:
            return [_resolves_to(resolve_is.group(1))]
        equals = _FIELD_EQUALS.match(argument)
        if equals:
            return [_field_equals(equals.group(1), equals.group(2))]
    raise UnsupportedExpression(f"unsupported function '{segment}'")


@dataclass(frozen=True)
class Path:
    """One compiled path: from a root (a resource or an element), apply the steps."""

    root: str | None  # the type the path starts at, or None for a relative path
    steps: tuple[Step, ...]
    #: The element the path first looks up (None if it starts otherwise): absent → nothing found.
    first: str | None = None
    #: Whether the path only looks up ``first`` (and filters it by type): one value per element.
    direct: bool = False
    #: The path as written (whitespace trimmed): equal texts find equal values.
    text: str = ""

    def evaluate(self, node: Any) -> list[Node]:
        """The values this path finds under ``node`` (made with :func:`prepare`)."""
        nodes: list[Node] = [(node, None)]
        for step in self.steps:
            nodes = step(nodes)
            if not nodes:
                break
        return nodes


def _compile_path(text: str) -> Path:
    text = text.strip()
    deceased = _DECEASED.match(text)
    if deceased:
        path = _compile_path(deceased.group(1))
        return Path(path.root, (*path.steps, _truthy), path.first)
    as_form = _AS_FORM.match(text)
    if as_form:
        inner = _compile_path(as_form.group(1))
        rest = [s for s in split_top_level(as_form.group(3), ".") if s.strip()]
        steps = [*inner.steps, _of_type(as_form.group(2))]
        for segment in rest:
            steps.extend(_segment_steps(segment))
        return Path(inner.root, tuple(steps), inner.first, inner.direct and not rest)
    if not text or "(" in text.split(".", 1)[0]:
        raise UnsupportedExpression(f"unsupported expression '{text}'")
    segments = split_top_level(text, ".")
    head = segments[0].strip()
    root: str | None = None
    if head[:1].isupper() and _NAME.match(head):
        root, segments = head, segments[1:]
    steps: list[Step] = []
    for segment in segments:
        steps.extend(_segment_steps(segment))
    first = segments[0].strip() if segments and _NAME.match(segments[0].strip()) else None
    direct = first is not None and all(_TYPE_FILTER.match(s.strip()) for s in segments[1:])
    return Path(root, tuple(steps), first, direct)


@dataclass(frozen=True)
class Expression:
    """A compiled expression: the union of its paths."""

    text: str
    paths: tuple[Path, ...]

    def evaluate(self, node: Any) -> list[Node]:
        """Every value the expression finds under ``node`` (a resource or an element, made with :func:`prepare`)."""
        out: list[Node] = []
        for path in self.paths:
            out.extend(path.evaluate(node))
        return out

    @property
    def texts(self) -> frozenset[str]:
        """The texts of the paths (what the expression reads, whatever the order)."""
        return frozenset(p.text for p in self.paths)

    @property
    def first_names(self) -> frozenset[str] | None:
        """The elements one of which must be present for anything to be found (None: unknown)."""
        names = {p.first for p in self.paths}
        return None if None in names else frozenset(n for n in names if n is not None)

    def for_type(self, resource_type: str, abstract_roots: Iterable[str] = ("Resource", "DomainResource")) -> Expression:
        """Only the paths that apply to ``resource_type`` (shared definitions list several types)."""
        roots = {resource_type, *abstract_roots}
        return Expression(self.text, tuple(p for p in self.paths if p.root is None or p.root in roots))


def compile_expression(text: str) -> Expression:
    """Compile a search-parameter expression; raises :class:`UnsupportedExpression`."""
    paths = tuple(
        replace(_compile_path(part), text=" ".join(part.split())) for part in split_top_level(text, "|") if part.strip()
    )
    if not paths:
        raise UnsupportedExpression("empty expression")
    return Expression(text, paths)
