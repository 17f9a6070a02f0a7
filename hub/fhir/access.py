"""What one principal may read and change, in FHIR terms.

``hub.auth`` builds an :class:`Access` from a token (scopes, role, institutions); the FHIR
service checks every interaction against it, and the store filters every query by it.

Two rules:

- **Interactions per type** (SMART scopes): ``r`` read/vread/history, ``s`` search,
  ``c`` create, ``u`` update/patch, ``d`` delete.
- **Institutions**: patient data (``Patient`` and every type of the Patient compartment)
  carries its owning institution as a ``meta.tag`` (:data:`INSTITUTION_TAG`). A principal
  bound to institutions sees and writes only patient data tagged with one of them; shared
  reference data (Organization, CodeSystem, ValueSet…) is not institution-bound.
- **Owners**: a ``Subscription`` carries the client that owns it (:data:`OWNER_TAG`); only
  that client, and principals that may write every type, see or change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from hub.errors import Forbidden, InvalidRequest
from hub.fhir.compartments import patient_compartment
from hub.fhir.criteria import AllOf, AnyOf, ChainCriterion, Criterion, HasCriterion, TokenCriterion
from hub.fhir.repository import StoredResource

#: ``meta.tag`` system of the institution (an Organization id) that owns a piece of patient data.
INSTITUTION_TAG = "urn:hub:institution"
#: ``meta.tag`` system of the client that owns a resource of an :data:`OWNED_TYPES` type.
OWNER_TAG = "urn:hub:subscriber"
#: Types a client sees and changes only when it owns them (their channels hold its endpoints and
#: secrets); principals that may write every type (administrators, the hub) see them all.
OWNED_TYPES = frozenset({"Subscription"})
#: The interaction letters of SMART v2 scopes.
INTERACTIONS = "cruds"
ALL_TYPES = "*"
_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@lru_cache(maxsize=1)
def patient_data_types() -> frozenset[str]:
    """The types that hold personal health data: Patient and the Patient compartment."""
    return frozenset(patient_compartment()) | {"Patient"}


def institution_tags(content: bytes | None) -> set[str] | None:
    """The institution codes tagged on stored JSON (``None`` if it carries no tag at all)."""
    if content is None or INSTITUTION_TAG.encode() not in content:
        return None
    meta = orjson.loads(content).get("meta") or {}
    return {t.get("code") for t in meta.get("tag") or () if isinstance(t, dict) and t.get("system") == INSTITUTION_TAG}


def owner_in(resource: dict[str, Any]) -> str | None:
    """The client tagged as the owner of a resource (:data:`OWNER_TAG`), or None."""
    meta = resource.get("meta") or {}
    return next((t.get("code") for t in meta.get("tag") or ()
                 if isinstance(t, dict) and t.get("system") == OWNER_TAG), None)


def owner_of(content: bytes | None) -> str | None:
    """The client tagged as the owner of stored JSON, or None."""
    if content is None or OWNER_TAG.encode() not in content:
        return None
    return owner_in(orjson.loads(content))


@dataclass(frozen=True)
class Access:
    """The FHIR access of one principal.

    ``grants`` maps a resource type (or ``*``) to its interaction letters; ``institutions``
    is None for a principal that may see every institution's data.
    """

    principal: str
    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)
    institutions: frozenset[str] | None = None
    #: The institutions the principal itself is bound to (untagged writes are stamped with its only one).
    home: frozenset[str] = frozenset()
    #: Whose patient data it may change: its own institutions and their branches (a consortium
    #: limit widens what it reads, never what it writes). Only used when ``institutions`` is set.
    writable: frozenset[str] = frozenset()

    @classmethod
    def unrestricted(cls, principal: str = "hub") -> "Access":
        """Everything (the hub's own jobs and command line)."""
        return cls(principal, {ALL_TYPES: frozenset(INTERACTIONS)})

    def as_json(self) -> dict[str, Any]:
        """The access as JSON (kept with work the hub does later for the principal, such as an export)."""
        return {
            "principal": self.principal,
            "grants": {t: "".join(sorted(letters)) for t, letters in sorted(self.grants.items())},
            "institutions": sorted(self.institutions) if self.institutions is not None else None,
            "home": sorted(self.home), "writable": sorted(self.writable),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Access":
        """The access :meth:`as_json` wrote."""
        institutions = data.get("institutions")
        return cls(data["principal"], {t: frozenset(letters) for t, letters in data["grants"].items()},
                   frozenset(institutions) if institutions is not None else None,
                   frozenset(data.get("home") or ()), frozenset(data.get("writable") or ()))

    def allows(self, resource_type: str, interaction: str) -> bool:
        """May the principal do ``interaction`` (one of ``cruds``) on ``resource_type``?"""
        if resource_type == "AuditEvent" and interaction in "cud":
            return False  # the audit trail is written by the hub alone
        return interaction in self.grants.get(resource_type, ()) or interaction in self.grants.get(ALL_TYPES, ())

    def require(self, resource_type: str, interaction: str) -> None:
        """Raise :class:`Forbidden` unless :meth:`allows`."""
        if not self.allows(resource_type, interaction):
            raise Forbidden(
                f"The access token does not allow {_NAMES[interaction]} of {resource_type} "
                f"(needs scope system/{resource_type}.{interaction} or system/{resource_type}."
                f"{'read' if interaction in 'rs' else 'write'})"
            )

    def types_allowed(self, candidates: Iterable[str], interaction: str) -> tuple[str, ...]:
        """Those of ``candidates`` the principal may ``interaction``."""
        return tuple(t for t in candidates if self.allows(t, interaction))

    @property
    def every_type(self) -> bool:
        """True when a wildcard grant covers reading and searching every type."""
        return {"r", "s"} <= self.grants.get(ALL_TYPES, frozenset())

    @property
    def manages_all(self) -> bool:
        """True when a wildcard grant covers writing every type (administrators, the hub): such a
        principal sees and changes every client's :data:`OWNED_TYPES` resources."""
        return {"c", "u", "d"} <= self.grants.get(ALL_TYPES, frozenset())

    @property
    def limited(self) -> bool:
        """True when the store must filter what this principal sees (institutions, or owned types)."""
        return self.institutions is not None or not self.manages_all

    def owns_only(self, resource_type: str | None) -> bool:
        """True when, of ``resource_type``, the principal sees only what it owns."""
        return resource_type in OWNED_TYPES and not self.manages_all

    def owner_criterion(self) -> TokenCriterion:
        """The search criterion: owned by the principal."""
        return TokenCriterion("_tag", ((OWNER_TAG, self.principal),))

    # -- institutions --------------------------------------------------------

    def bound(self, resource_type: str | None, types: tuple[str, ...] = ()) -> bool:
        """True when results of ``resource_type`` (None: the ``types`` of a system search, or every
        type) are limited to institutions. A search mixing patient data and shared types is bound
        as a whole."""
        if self.institutions is None:
            return False
        if resource_type is None:
            return not types or any(t in patient_data_types() for t in types)
        return resource_type in patient_data_types()

    def institution_criterion(self) -> TokenCriterion:
        """The search criterion: tagged with one of the principal's institutions."""
        assert self.institutions is not None
        return TokenCriterion("_tag", tuple((INSTITUTION_TAG, code) for code in sorted(self.institutions)))

    def sees(self, stored: StoredResource) -> bool:
        """May the principal see this stored resource (its institution tag)?

        A deletion carries no tag: institution-bound principals do not see it (404, not 410).
        """
        if self.owns_only(stored.resource_type):
            return owner_of(stored.content) == self.principal
        if not self.bound(stored.resource_type):
            return True
        if stored.content is None:
            return False
        tags = institution_tags(stored.content)
        return bool(tags and tags & self.institutions)  # type: ignore[operator]

    def may_change(self, stored: StoredResource) -> bool:
        """May the principal write a new version of (or delete) this stored resource?"""
        if self.owns_only(stored.resource_type):
            return owner_of(stored.content) == self.principal
        if not self.bound(stored.resource_type):
            return True
        tags = institution_tags(stored.content)
        return bool(tags and tags & self.writable)

    def stamp(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` tagged with its owning institution, when the principal is institution-bound.

        An untagged resource gets the principal's own institution (it must have exactly one);
        a tag naming an institution out of its reach is refused.
        """
        resource_type = resource.get("resourceType", "")
        if not self.bound(resource_type):
            return resource
        assert self.institutions is not None
        meta = resource.get("meta") or {}
        tags = [t for t in meta.get("tag") or () if isinstance(t, dict) and t.get("system") == INSTITUTION_TAG]
        codes = {t.get("code") for t in tags}
        if codes:
            foreign = codes - self.writable
            if foreign:
                raise Forbidden(f"This client may not write data of institution {sorted(foreign)[0]}")
            return resource
        if len(self.home) != 1:
            raise InvalidRequest(
                f"Tag the {resource_type} with its institution (meta.tag system {INSTITUTION_TAG}): "
                "this client writes for several institutions",
                expression=f"{resource_type}.meta.tag",
            )
        (code,) = self.home
        tag = {"system": INSTITUTION_TAG, "code": code}
        return {**resource, "meta": {**meta, "tag": [*(meta.get("tag") or ()), tag]}}


def nested_types(criteria: tuple[Criterion, ...]) -> set[str]:
    """The resource types that chains (``subject:Patient.name``) and ``_has`` search inside."""
    found: set[str] = set()
    for criterion in criteria:
        if isinstance(criterion, ChainCriterion):
            found |= {criterion.target_type} | nested_types(criterion.criteria)
        elif isinstance(criterion, HasCriterion):
            found |= {criterion.source_type} | nested_types(criterion.criteria)
        elif isinstance(criterion, AnyOf):
            found |= nested_types(criterion.alternatives)
        elif isinstance(criterion, AllOf):
            found |= nested_types(criterion.criteria)
    return found


def scoped_criteria(criteria: tuple[Criterion, ...], access: Access) -> tuple[Criterion, ...]:
    """``criteria`` with the institution criterion inside every chain and ``_has`` over bound types,
    so that they cannot test other institutions' data."""
    out: list[Criterion] = []
    for criterion in criteria:
        if isinstance(criterion, ChainCriterion):
            inner = scoped_criteria(criterion.criteria, access)
            if access.bound(criterion.target_type):
                inner = (*inner, access.institution_criterion())
            out.append(ChainCriterion(criterion.param, criterion.target_type, inner))
        elif isinstance(criterion, HasCriterion):
            inner = scoped_criteria(criterion.criteria, access)
            if access.bound(criterion.source_type):
                inner = (*inner, access.institution_criterion())
            out.append(HasCriterion(criterion.source_type, criterion.param, inner))
        elif isinstance(criterion, AnyOf):
            out.append(AnyOf(scoped_criteria(criterion.alternatives, access)))
        elif isinstance(criterion, AllOf):
            out.append(AllOf(scoped_criteria(criterion.criteria, access)))
        else:
            out.append(criterion)
    return tuple(out)
