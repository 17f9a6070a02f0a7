"""FHIR Bulk Data Access (``$export``, IG v2.0) in FHIR terms: the kick-off request, which
resources of each type an export holds, and the completion manifest.

Three levels: every resource the client may read (``[base]/$export``), the data of every
patient (``[base]/Patient/$export``: Patients and the types of the Patient compartment that
refer to one), and the data of a Group's patients (``[base]/Group/[id]/$export``). A Group
lists its members (``member.entity`` references to Patients), or names an institution or
consortium with the characteristic ``urn:hub:group|institution`` (``valueReference`` to the
Organization): its members are then the patients registered at that institution, or at any
institution under the consortium, when the export runs. As every search of the hub, group
membership follows the master patient index: a member's data recorded under the same
person's Patients at other institutions belongs to the export, and so do those Patients
(and the person's golden Patient).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.errors import Forbidden, InvalidRequest, NotSupported
from hub.fhir.access import INSTITUTION_TAG, Access
from hub.fhir.compartments import patient_compartment
from hub.fhir.criteria import (
    AllOf,
    AnyOf,
    Criterion,
    IdCriterion,
    LastUpdatedCriterion,
    MemberCriterion,
    RangeValue,
    RefersCriterion,
    TokenCriterion,
)
from hub.fhir.instants import format_instant, parse_instant
from hub.fhir.resource_types import require_id, resource_types
from hub.fhir.subsetting import parse_elements
from hub.privacy import clip

NDJSON = "application/fhir+ndjson"
#: ``_outputFormat`` values meaning NDJSON (the IG's abbreviations included).
OUTPUT_FORMATS = frozenset({NDJSON, "application/ndjson", "ndjson"})
LEVELS = ("system", "patient", "group")
#: ``Group.characteristic.code`` of a Group whose members are an institution's (or consortium's) patients.
GROUP_CHARACTERISTIC_SYSTEM = "urn:hub:group"
INSTITUTION_CHARACTERISTIC = "institution"
#: Types a system-level export leaves out unless ``_type`` names them (endpoints and their secrets).
NOT_BY_DEFAULT = frozenset({"Subscription"})
#: Kick-off parameters of the IG this server does not offer.
_UNSUPPORTED = frozenset({"patient", "includeAssociatedData", "_typeQuery", "organizeOutputBy", "allowPartialManifests"})
#: A comma that starts another ``Type?query`` inside one ``_typeFilter`` value.
_FILTER_SPLIT = re.compile(r",(?=[A-Z][A-Za-z]{1,63}\?)")


@dataclass(frozen=True)
class ExportRequest:
    """A checked kick-off request."""

    level: str
    #: The Group of a group-level export.
    group_id: str | None = None
    #: ``_type``: the types asked for (empty: every type the level and the client allow).
    types: tuple[str, ...] = ()
    #: ``_since``: only resources changed after this instant.
    since: datetime | None = None
    #: ``_typeFilter``: ``(type, query)``; several for one type are alternatives.
    type_filters: tuple[tuple[str, str], ...] = ()
    #: ``_elements`` as given.
    elements: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The request as stored with its job."""
        return {"level": self.level, "group": self.group_id, "types": list(self.types),
                "since": format_instant(self.since) if self.since else None,
                "typeFilters": [list(f) for f in self.type_filters], "elements": self.elements}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ExportRequest":
        """The request a job stored."""
        since = data.get("since")
        return cls(data["level"], data.get("group"), tuple(data.get("types") or ()),
                   parse_instant("_since", since) if since else None,
                   tuple((t, q) for t, q in data.get("typeFilters") or ()), data.get("elements"))


def level_types(level: str) -> tuple[str, ...]:
    """Every type an export of ``level`` may hold, in export order (Patient first)."""
    if level == "system":
        return tuple(sorted(resource_types()))
    return ("Patient", *sorted(t for t in patient_compartment() if t != "Patient"))


def parse_kickoff(level: str, group_id: str | None, params: Sequence[tuple[str, str]], *,
                  lenient: bool = False) -> ExportRequest:
    """Check the kick-off parameters of an export of ``level`` (``system``, ``patient``, ``group``).

    Unknown parameters are refused, or ignored under ``Prefer: handling=lenient``; parameters of
    the IG this server does not offer are refused either way.
    """
    if level not in LEVELS:
        raise InvalidRequest(f"Unknown export level '{clip(level, 20)}'")
    if group_id is not None:
        require_id(group_id)
    allowed = set(level_types(level))
    types: list[str] = []
    filters: list[tuple[str, str]] = []
    since: datetime | None = None
    elements: str | None = None
    for name, value in params:
        if name == "_outputFormat":  # an unencoded "+" arrives as a space
            if value.strip().replace(" ", "+") not in OUTPUT_FORMATS:
                raise NotSupported(f"_outputFormat '{clip(value, 60)}' is not supported; use {NDJSON}")
        elif name == "_since":
            since = parse_instant("_since", value)
        elif name == "_type":
            for item in (t.strip() for t in value.split(",")):
                types.append(_known_type(item, allowed, level, "_type"))
        elif name == "_typeFilter":
            for query in _FILTER_SPLIT.split(value):
                resource_type, mark, criteria = query.strip().partition("?")
                if not mark:
                    raise InvalidRequest(f"_typeFilter '{clip(query, 80)}' must read Type?criteria")
                filters.append((_known_type(resource_type, allowed, level, "_typeFilter"), criteria))
        elif name == "_elements":
            elements = value
        elif name in _UNSUPPORTED:
            raise NotSupported(f"The $export parameter '{name}' is not supported by this server")
        elif name in ("_format", "_pretty"):
            continue
        elif not lenient:
            raise InvalidRequest(f"Unknown $export parameter '{clip(name, 64)}' (use _type, _since, _typeFilter, "
                                 "_elements, _outputFormat; or Prefer: handling=lenient to ignore it)")
    unique = tuple(dict.fromkeys(types))
    stray = [t for t, _q in filters if unique and t not in unique]
    if stray:
        raise InvalidRequest(f"_typeFilter names {stray[0]}, which _type does not ask for")
    if elements is not None:
        parse_elements(elements, unique or level_types(level))
    return ExportRequest(level, group_id, unique, since, tuple(filters), elements)


def _known_type(name: str, allowed: set[str], level: str, param: str) -> str:
    if name not in resource_types():
        raise InvalidRequest(f"{param}: unknown resource type '{clip(name, 64)}'")
    if name not in allowed:
        raise InvalidRequest(f"{param}: {name} is not patient data; a {level}-level export holds Patient and the "
                             "types of the Patient compartment")
    return name


def export_types(request: ExportRequest, access: Access) -> tuple[str, ...]:
    """The types the export holds: those asked (each one the client may search), or every type of
    the level the client may search (a system-level export leaves out :data:`NOT_BY_DEFAULT`)."""
    if request.types:
        for resource_type in request.types:
            access.require(resource_type, "s")
        return request.types
    candidates = [t for t in level_types(request.level) if request.level != "system" or t not in NOT_BY_DEFAULT]
    allowed = access.types_allowed(candidates, "s")
    if not allowed:
        raise Forbidden("The access token allows reading none of the types this export holds")
    return allowed


@dataclass(frozen=True)
class Membership:
    """Who a Group's members are, as criteria on Patient, and member references that are not Patients.

    When the export runs, the store takes the Patients matching ``patients`` and every Patient of the
    same regional persons (the master patient index's links) as the export's member set.
    """

    patients: tuple[Criterion, ...]
    ignored: tuple[str, ...] = ()


def group_membership(group: dict[str, Any], reach: Callable[[str], frozenset[str]]) -> Membership:
    """The members of a stored Group; ``reach`` gives the institutions at or under an Organization id.

    An institution characteristic (``urn:hub:group|institution`` with a ``valueReference``) makes
    the members every patient tagged with one of those institutions; otherwise the members are
    the Group's ``member.entity`` Patients that are not ``inactive``.
    """
    institutions: set[str] = set()
    for characteristic in group.get("characteristic") or ():
        codings = (characteristic.get("code") or {}).get("coding") or ()
        if any(c.get("system") == GROUP_CHARACTERISTIC_SYSTEM and c.get("code") == INSTITUTION_CHARACTERISTIC
               for c in codings):
            reference = (characteristic.get("valueReference") or {}).get("reference") or ""
            kind, _, org = reference.partition("/")
            if kind != "Organization" or not org or characteristic.get("exclude"):
                raise InvalidRequest(f"Group/{group.get('id')}: the institution characteristic needs a valueReference "
                                     "to an Organization (and exclude false)")
            institutions |= reach(org)
    if institutions:
        tags = tuple((INSTITUTION_TAG, code) for code in sorted(institutions))
        return Membership((TokenCriterion("_tag", tags),))
    ids: list[str] = []
    ignored: list[str] = []
    for member in group.get("member") or ():
        if member.get("inactive"):
            continue
        reference = (member.get("entity") or {}).get("reference") or ""
        kind, _, member_id = reference.partition("/")
        if kind == "Patient" and member_id and "/" not in member_id:
            ids.append(member_id)
        else:
            ignored.append(clip(reference, 120) or "(no reference)")
    return Membership((IdCriterion(tuple(dict.fromkeys(ids))),), tuple(ignored))


def consortium_group(group_id: str, organization_id: str, name: str) -> dict[str, Any]:
    """A Group whose members are the patients of an institution, or of every institution under a consortium."""
    return {
        "resourceType": "Group", "id": group_id, "type": "person", "actual": False, "name": name,
        "managingEntity": {"reference": f"Organization/{organization_id}"},
        "characteristic": [{
            "code": {"coding": [{"system": GROUP_CHARACTERISTIC_SYSTEM, "code": INSTITUTION_CHARACTERISTIC,
                                 "display": "登记机构"}]},
            "valueReference": {"reference": f"Organization/{organization_id}"}, "exclude": False}],
    }


def level_criteria(level: str, resource_type: str, member_set: str | None = None, *,
                   few_members: bool = False) -> tuple[Criterion, ...]:
    """The criteria placing a resource of ``resource_type`` in an export of ``level``: at the patient
    level, referring to a Patient through a Patient-compartment parameter; at the group level, to
    one of the members the store holds as ``member_set`` (see :func:`group_membership`)."""
    if level == "system":
        return ()
    if resource_type == "Patient":
        return () if level == "patient" else (MemberCriterion(_required(member_set)),)
    params = patient_compartment().get(resource_type, ())
    if level == "patient":
        return (RefersCriterion(params, "Patient"),)
    return (RefersCriterion(params, "Patient", _required(member_set), few_members),)


def _required(member_set: str | None) -> str:
    if member_set is None:
        raise ValueError("a group-level export needs its member set")
    return member_set


def _all(criteria: tuple[Criterion, ...]) -> Criterion:
    return criteria[0] if len(criteria) == 1 else AllOf(criteria)


def since_criterion(since: datetime) -> LastUpdatedCriterion:
    """Changed after ``since``."""
    micros = int(since.timestamp() * 1_000_000)
    return LastUpdatedCriterion((RangeValue("gt", micros, micros),))


def filters_criterion(alternatives: Sequence[tuple[Criterion, ...]]) -> Criterion | None:
    """Several ``_typeFilter``s of one type: a resource matching any one of them (None: one of them has no
    criteria, so every resource of the type matches)."""
    if any(not criteria for criteria in alternatives):
        return None
    return _all(alternatives[0]) if len(alternatives) == 1 else AnyOf(tuple(_all(c) for c in alternatives))


@dataclass(frozen=True)
class OutputFile:
    """One file of a finished export."""

    resource_type: str
    url: str
    count: int


def manifest(transaction_time: datetime, request_url: str, outputs: Sequence[OutputFile],
             errors: Sequence[OutputFile]) -> dict[str, Any]:
    """The completion manifest (``requiresAccessToken``: the files are the asking client's alone)."""
    return {
        "transactionTime": format_instant(transaction_time),
        "request": request_url,
        "requiresAccessToken": True,
        "output": [{"type": f.resource_type, "url": f.url, "count": f.count} for f in outputs],
        "error": [{"type": "OperationOutcome", "url": f.url, "count": f.count} for f in errors],
    }
