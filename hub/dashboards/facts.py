"""What the indicators count, read from one resource: pure FHIR meaning, no SQL.

A resource gives zero or more :class:`Fact` rows:

- ``visit``: an Encounter that is a visit (class AMB, EMER, IMP…), on the local day it started, at the
  Organization that provided it;
- ``follow-up:<program>``: an Encounter of a chronic-disease program (``urn:hub:follow-up-program`` hypertension or
  diabetes: 慢病随访);
- ``bp`` / ``glucose``: a final blood-pressure panel (LOINC 85354-9: systolic 8480-6, diastolic 8462-4) or fasting
  glucose (LOINC 14771-0 in mmol/L, 1558-6 in mg/dL converted), with the Encounter it was measured in;
- ``referral``: a ServiceRequest of category *Patient referral* (SNOMED CT 3457005), from the requester to the
  performer, ``up`` (上转) or ``down`` (下转) as ``urn:hub:referral-direction`` says;
- ``record``: any resource a source system sent (``meta.source`` ``urn:hub:source:<id>``), with how many of its
  coded values are local codes and how many of those also carry a standard code.

Withdrawn resources (cancelled, entered-in-error) count as nothing but their ``record``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hub.coding.mapping_tables import LOCAL_PREFIX
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.search_values import date_range, local_zone, micros_to_datetime

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
REFERRAL_CATEGORY = "3457005"
PROGRAM_SYSTEM = "urn:hub:follow-up-program"
DIRECTION_SYSTEM = "urn:hub:referral-direction"
SOURCE_PREFIX = "urn:hub:source:"
PROGRAMS = frozenset({"hypertension", "diabetes"})
BP_PANEL, SYSTOLIC, DIASTOLIC = "85354-9", "8480-6", "8462-4"
#: Fasting glucose: LOINC code → the factor to mmol/L from the unit it is reported in (mg/dL for 1558-6).
GLUCOSE = {"14771-0": 1.0, "1558-6": 1 / 18.016}
WITHDRAWN = frozenset({"cancelled", "entered-in-error", "planned", "revoked", "draft"})
FINAL = frozenset({"final", "amended", "corrected"})


@dataclass(frozen=True)
class Fact:
    """One row the indicators count (see :mod:`hub.store.dashboard_tables`)."""

    kind: str
    day: str = ""
    moment: int = 0
    institution: str = ""
    patient: str = ""
    code: str = ""
    other: str = ""
    status: str = ""
    value1: float | None = None
    value2: float | None = None


def when(text: Any) -> tuple[str, int]:
    """The local day (YYYY-MM-DD) a FHIR date or dateTime starts on, and its instant in microseconds since 1970
    (``('', 0)`` if it is none)."""
    if not isinstance(text, str):
        return "", 0
    bounds = date_range(text)
    if bounds is None:
        return "", 0
    return micros_to_datetime(bounds[0]).astimezone(local_zone()).date().isoformat(), bounds[0]


def facts(resource_type: str, resource: dict[str, Any]) -> list[Fact]:
    """The facts of one resource as stored."""
    out: list[Fact] = []
    record = _record(resource)
    if record is not None:
        out.append(record)
    status = str(resource.get("status") or "")
    if status in WITHDRAWN:
        return out
    if resource_type == "Encounter":
        out.extend(_encounter(resource, status))
    elif resource_type == "ServiceRequest":
        out.extend(_referral(resource, status))
    elif resource_type == "Observation" and status in FINAL:
        out.extend(_observation(resource))
    return out


def _ref_id(reference: Any, resource_type: str) -> str:
    value = reference.get("reference") if isinstance(reference, dict) else None
    prefix = resource_type + "/"
    if isinstance(value, str) and value.startswith(prefix):
        found = value[len(prefix):].split("/_history/", 1)[0]
        return found if 0 < len(found) <= 64 and "/" not in found else ""
    return ""


def _tag(resource: dict[str, Any]) -> str:
    meta = resource.get("meta")
    for tag in (meta.get("tag") or ()) if isinstance(meta, dict) else ():
        if isinstance(tag, dict) and tag.get("system") == INSTITUTION_TAG and isinstance(tag.get("code"), str):
            return tag["code"][:64]
    return ""


def _codes(concept: Any, system: str) -> list[str]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [c["code"] for c in codings or () if isinstance(c, dict) and c.get("system") == system
            and isinstance(c.get("code"), str)]


def _encounter(resource: dict[str, Any], status: str) -> list[Fact]:
    day, moment = when(resource["period"].get("start") if isinstance(resource.get("period"), dict) else None)
    institution = _ref_id(resource.get("serviceProvider"), "Organization") or _tag(resource)
    patient = _ref_id(resource.get("subject"), "Patient")
    programs = sorted({code for concept in resource.get("type") or () for code in _codes(concept, PROGRAM_SYSTEM)
                       if code in PROGRAMS})
    if programs:
        return [Fact(f"follow-up:{program}", day, moment, institution, patient, program, status=status[:16])
                for program in programs]
    visit_class = resource.get("class")
    code = visit_class.get("code") if isinstance(visit_class, dict) else None
    return [Fact("visit", day, moment, institution, patient, code[:64] if isinstance(code, str) else "",
                 status=status[:16])]


def _referral(resource: dict[str, Any], status: str) -> list[Fact]:
    if not any(REFERRAL_CATEGORY in _codes(c, SNOMED) for c in resource.get("category") or ()):
        return []
    directions = _codes(resource.get("code"), DIRECTION_SYSTEM)
    performers = resource.get("performer") or ()
    target = _ref_id(performers[0], "Organization") if isinstance(performers, list) and performers else ""
    return [Fact("referral", *when(resource.get("authoredOn")),
                 _ref_id(resource.get("requester"), "Organization") or _tag(resource),
                 _ref_id(resource.get("subject"), "Patient"), directions[0][:64] if directions else "", target,
                 status[:16])]


def _quantity(holder: dict[str, Any]) -> float | None:
    quantity = holder.get("valueQuantity")
    value = quantity.get("value") if isinstance(quantity, dict) else None
    return float(value) if isinstance(value, int | float | Decimal) and not isinstance(value, bool) else None


def _observation(resource: dict[str, Any]) -> list[Fact]:
    codes = set(_codes(resource.get("code"), LOINC))
    effective = resource.get("effectiveDateTime")
    if effective is None and isinstance(resource.get("effectivePeriod"), dict):
        effective = resource["effectivePeriod"].get("start")
    (day, moment), patient = when(effective), _ref_id(resource.get("subject"), "Patient")
    visit = _ref_id(resource.get("encounter"), "Encounter")
    institution = _tag(resource)
    if BP_PANEL in codes:
        values: dict[str, float | None] = {}
        for component in resource.get("component") or ():
            if isinstance(component, dict):
                for code in _codes(component.get("code"), LOINC):
                    values[code] = _quantity(component)
        systolic, diastolic = values.get(SYSTOLIC), values.get(DIASTOLIC)
        if systolic is None or diastolic is None:
            return []
        return [Fact("bp", day, moment, institution, patient, BP_PANEL, visit, value1=systolic, value2=diastolic)]
    for code, factor in GLUCOSE.items():
        if code in codes:
            value = _quantity(resource)
            if value is None:
                return []
            return [Fact("glucose", day, moment, institution, patient, code, visit, value1=round(value * factor, 3))]
    return []


def _record(resource: dict[str, Any]) -> Fact | None:
    meta = resource.get("meta")
    source = meta.get("source") if isinstance(meta, dict) else None
    if not isinstance(source, str) or not source.startswith(SOURCE_PREFIX):
        return None
    coded = standard = 0
    for concept in _concepts(resource):
        systems = [c.get("system") for c in concept.get("coding") or () if isinstance(c, dict)]
        systems = [s for s in systems if isinstance(s, str)]
        if any(s.startswith(LOCAL_PREFIX) for s in systems):
            coded += 1
            standard += any(not s.startswith(LOCAL_PREFIX) for s in systems)
    return Fact("record", "", 0, _tag(resource), "", source[len(SOURCE_PREFIX):][:64], value1=coded, value2=standard)


def _concepts(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """The CodeableConcepts of the resource's top level, of its lists and of its top-level extensions."""
    found: list[dict[str, Any]] = []
    for name, value in resource.items():
        if name == "meta":
            continue
        for item in value if isinstance(value, list) else (value,):
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("coding"), list):
                found.append(item)
            elif name == "extension" and isinstance(item.get("valueCodeableConcept"), dict):
                found.append(item["valueCodeableConcept"])
    return found
