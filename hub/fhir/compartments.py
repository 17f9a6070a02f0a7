"""The patient compartment (R4 ``CompartmentDefinition/patient``, copied from HL7 as data).

Which resources belong to a patient: those that refer to it through the parameters the
definition lists for their type (``Observation.subject``, ``Encounter.patient``…).
"""

from __future__ import annotations

from functools import lru_cache

import orjson

from hub.fhir.resource_types import load_definition, resource_types


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
