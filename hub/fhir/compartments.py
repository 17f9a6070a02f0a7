"""The patient compartment (R4 ``CompartmentDefinition/patient``, copied from HL7 as data).

Which resources belong to a patient: those that refer to it through the parameters the
definition lists for their type (``Observation.subject``, ``Encounter.patient``…).
"""

from __future__ import annotations

from functools import lru_cache

import orjson

from hub.errors import InvalidRequest
from hub.fhir.criteria import CompartmentCriterion, Criterion, LastUpdatedCriterion, RangeValue
from hub.fhir.resource_types import load_definition, resource_types
from hub.fhir.search_values import date_range
from hub.privacy import clip


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type → the reference parameters that place it in a patient's compartment."""
    definition = orjson.loads(load_definition("compartmentdefinition-patient.json"))
    out: dict[str, tuple[str, ...]] = {}
    for item in definition["resource"]:
        params = tuple(p for p in item.get("param") or () if not p.startswith("{"))
        if params and item["code"] in resource_types():
            out[item["code"]] = params
    return out


def everything_criteria(
    patient_id: str, params: list[tuple[str, str]]
) -> tuple[tuple[Criterion, ...], list[tuple[str, str]]]:
    """``Patient/[id]/$everything``: the criteria (compartment, ``_since``) and the paging parameters left.

    ``_type`` limits the types (the Patient itself is one of them); other parameters are refused.
    """
    compartment = patient_compartment()
    types = set(compartment) | {"Patient"}
    extra: list[Criterion] = []
    rest: list[tuple[str, str]] = []
    for name, value in params:
        if name == "_type":
            types &= {t.strip() for t in value.split(",")}
            if not types:
                raise InvalidRequest(f"Parameter _type: none of '{clip(value, 80)}' is in the Patient compartment")
        elif name == "_since":
            moment = date_range(value)
            if moment is None or "T" not in value:
                raise InvalidRequest("Parameter _since must be an instant (YYYY-MM-DDThh:mm:ss+zz:zz)")
            extra.append(LastUpdatedCriterion((RangeValue("ge", moment[0], moment[1]),)))
        elif name in ("_count", "_after", "_before"):
            rest.append((name, value))
        else:
            raise InvalidRequest(f"Parameter '{clip(name, 64)}' is not supported by $everything "
                                 "(use _type, _since, _count)")
    pairs = tuple((t, compartment[t]) for t in sorted(types) if t in compartment)
    member = CompartmentCriterion("Patient", patient_id, pairs, include_self="Patient" in types)
    return (member, *extra), [("_type", ",".join(sorted(types))), *rest]
