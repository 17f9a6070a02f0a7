"""Search criteria: what a parsed search asks the store to match.

All criteria of a search must match (AND); the values inside one criterion are
alternatives (OR, the comma of a FHIR query). Index parameter names are those the
extractor writes (:mod:`hub.fhir.indexing`): ``code``, ``code:text``,
``identifier:of-type``, ``subject:identifier``, composite names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True, slots=True)
class TokenCriterion:
    """Tokens ``(system, code)``: system None = any, ``""`` = none; code None = any code of the system."""

    param: str
    values: tuple[tuple[str | None, str | None], ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class StringCriterion:
    """Strings: ``start`` and ``contains`` compare normalized values, ``exact`` the value as written."""

    param: str
    values: tuple[str, ...]
    mode: str = "start"


@dataclass(frozen=True, slots=True)
class RangeValue:
    """One searched date or number: its prefix and the range its precision covers."""

    prefix: str
    low: float
    high: float
    #: The value as written (numbers: ``gt``/``lt`` compare with it, not with the range).
    value: float = 0.0
    #: Quantities: system and code (None = any).
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class DateCriterion:
    """Dates (microseconds since 1970) compared by prefix with the stored ranges."""

    param: str
    values: tuple[RangeValue, ...]
    #: All values must hold (on the one value of a single-valued parameter), not any.
    all_of: bool = False


@dataclass(frozen=True, slots=True)
class NumberCriterion:
    """Numbers and quantities compared by prefix."""

    param: str
    values: tuple[RangeValue, ...]
    #: All values must hold (on the one value of a single-valued parameter), not any.
    all_of: bool = False


@dataclass(frozen=True, slots=True)
class UriCriterion:
    """URIs: ``exact``, ``below`` (stored starts with the value) or ``above`` (value starts with stored)."""

    param: str
    values: tuple[str, ...]
    mode: str = "exact"


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    """A searched reference: a local type (None = any of the targets) and id, or a url."""

    target_type: str | None
    target_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceCriterion:
    """References to any of ``values``; ``targets`` limits bare ids to the parameter's target types."""

    param: str
    values: tuple[ReferenceValue, ...]
    targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChainCriterion:
    """``param:target_type.<criteria>``: references to ``target_type`` resources matching ``criteria``."""

    param: str
    target_type: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class HasCriterion:
    """``_has:source_type:param:<criteria>``: resources referred to by matching ``source_type`` resources."""

    source_type: str
    param: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class MissingCriterion:
    """``:missing``: whether the resource has no value for ``param`` in index table ``table``."""

    table: str
    param: str
    missing: bool


@dataclass(frozen=True, slots=True)
class LastUpdatedCriterion:
    """``_lastUpdated`` (compared with the resource's own column)."""

    values: tuple[RangeValue, ...]


@dataclass(frozen=True, slots=True)
class IdCriterion:
    """Resources whose id is one of ``ids``."""

    ids: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class CompartmentCriterion:
    """Resources in the compartment of ``target_type/target_id``: referring to it through ``params``.

    ``params`` pairs each resource type with its reference parameters that place it there.
    """

    target_type: str
    target_id: str
    params: tuple[tuple[str, tuple[str, ...]], ...]
    #: Whether the compartment's own resource (the Patient) is included ($everything).
    include_self: bool = False


@dataclass(frozen=True, slots=True)
class RefersCriterion:
    """Refers through any of ``params`` to a ``target_type`` resource; with ``member_set``, to one whose id
    is in that set of ids the store holds (a Bulk Data export's Group members).

    Tested resource by resource (an index probe), so a scan of a whole type costs one pass.
    """

    params: tuple[str, ...]
    target_type: str
    member_set: str | None = None
    #: A hint: the set is small (a few thousand ids), so the store may look up what refers to its
    #: members instead of testing every resource.
    few_members: bool = False


@dataclass(frozen=True, slots=True)
class MemberCriterion:
    """The resource's own id is in the set of ids ``member_set`` the store holds."""

    member_set: str


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Any one of several criteria (a chain over several target types)."""

    alternatives: tuple[Criterion, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """All of several criteria (``:missing=true`` on a parameter searched through two others)."""

    criteria: tuple[Criterion, ...]


Criterion = Union[
    TokenCriterion, StringCriterion, DateCriterion, NumberCriterion, UriCriterion, ReferenceCriterion,
    ChainCriterion, HasCriterion, MissingCriterion, LastUpdatedCriterion, IdCriterion, CompartmentCriterion,
    RefersCriterion, MemberCriterion, AnyOf, AllOf,
]


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ``_sort`` key: an index parameter and its table, or ``_id``/``_lastUpdated``."""

    param: str
    table: str
    descending: bool = False
