"""Required code bindings — the check ``fhir.resources`` leaves out.

``fhir.resources`` accepts ``Observation.status = "bogus"`` (and the ``enum_values`` its
models carry are cut short where the FHIR short text ends in ``+``). The complete codes
of every required ``code`` binding come from HL7's FHIR R4 JSON schema, reduced to a walk
table (``definitions/required-codes.json``, made by ``tools/gen_required_codes.py``).
The walk goes over the input dict, which is what the hub stores. Required bindings on
``CodeableConcept`` elements are not in the schema; the few the hub's data uses are
listed in :data:`CODEABLE_CONCEPT_BINDINGS`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson

from hub.errors import Issue
from hub.fhir.resource_types import load_definition
from hub.privacy import clip

#: Required bindings on CodeableConcept elements: element path → (code system, codes).
CODEABLE_CONCEPT_BINDINGS: dict[str, tuple[str, frozenset[str]]] = {
    "Condition.clinicalStatus": (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    ),
    "Condition.verificationStatus": (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
    ),
    "AllergyIntolerance.clinicalStatus": (
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        frozenset({"active", "inactive", "resolved"}),
    ),
    "AllergyIntolerance.verificationStatus": (
        "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
        frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"}),
    ),
}


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, dict[str, Any]]]:
    table = orjson.loads(load_definition("required-codes.json"))["definitions"]
    for props in table.values():
        for target in props.values():
            if "codes" in target:
                target["codes"] = frozenset(target["codes"])
    return table


def check_required_bindings(resource: dict[str, Any]) -> list[Issue]:
    """Issues for every code outside its required value set in ``resource``."""
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return issues
    _walk(resource, resource_type, resource_type, issues)
    _check_codeable_concepts(resource, resource_type, issues)
    return issues


def _walk(data: dict[str, Any], definition: str, path: str, issues: list[Issue]) -> None:
    props = _table().get(definition)
    if not props:
        return
    for key, value in data.items():
        target = props.get(key)
        if target is None:
            continue
        many = isinstance(value, list)
        for index, item in enumerate(value if many else [value]):
            item_path = f"{path}.{key}[{index}]" if many else f"{path}.{key}"
            codes = target.get("codes")
            if codes is not None:
                if isinstance(item, str) and item not in codes:
                    allowed = ", ".join(sorted(codes)) if len(codes) <= 12 else "see the FHIR value set"
                    issues.append(Issue(
                        "code-invalid",
                        f"Code '{clip(item, 40)}' is not in the required value set of {item_path} (allowed: {allowed})",
                        "error",
                        (item_path,),
                    ))
            elif isinstance(item, dict):
                if target.get("resource"):
                    inner_type = item.get("resourceType")
                    if isinstance(inner_type, str):
                        _walk(item, inner_type, item_path, issues)
                        _check_codeable_concepts(item, inner_type, issues, item_path)
                else:
                    _walk(item, target["ref"], item_path, issues)


def _check_codeable_concepts(
    resource: dict[str, Any], resource_type: str, issues: list[Issue], base: str | None = None
) -> None:
    for path, (system, codes) in CODEABLE_CONCEPT_BINDINGS.items():
        owner, _, element = path.partition(".")
        if owner != resource_type or element not in resource:
            continue
        where = f"{base or resource_type}.{element}"
        concept = resource[element]
        codings = concept.get("coding") if isinstance(concept, dict) else None
        matching = [c for c in codings or [] if isinstance(c, dict) and c.get("system") == system]
        if not matching:
            issues.append(Issue(
                "code-invalid",
                f"{where} must have a coding from the required code system {system}",
                "error",
                (where,),
            ))
        for coding in matching:
            code = coding.get("code")
            if code not in codes:
                issues.append(Issue(
                    "code-invalid",
                    f"Code '{clip(code, 40)}' is not in the required value set of {where} "
                    f"(allowed: {', '.join(sorted(codes))})",
                    "error",
                    (where,),
                ))


