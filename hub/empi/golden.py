"""Golden Patients: the regional person as a FHIR Patient.

A golden Patient carries the regional identifier (区域主索引号), the demographics of its best
source (most complete, then most recently updated) and a ``link`` of type ``seealso`` to each
source Patient, with the link's grade, origin and score in an extension. It carries no hospital
identifiers, ID or phone numbers: a conditional create by a hospital identifier keeps finding
one Patient, the hospital's own, and personal numbers are not copied again. A merged person's
golden Patient is inactive and ``replaced-by`` the survivor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.empi.features import EMPI_TAG, GOLDEN_CODE

#: The identifier system of the regional identifiers.
REGIONAL_ID_SYSTEM = "urn:hub:empi:regional-id"
#: The extension on each link: grade (certain/probable/possible), origin (auto/manual), score.
LINK_EXTENSION = "urn:hub:extension:empi-link"
#: FHIR's match-grade extension (Bundle.entry.search of $match results).
MATCH_GRADE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/match-grade"


def luhn_digit(digits: str) -> str:
    """The Luhn (ISO/IEC 7812) check digit of a string of digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def regional_id(region_code: str, sequence: int) -> str:
    """区域主索引号: the 6-digit region code, a 10-digit sequence and a Luhn check digit."""
    body = f"{region_code}{sequence:010d}"
    return body + luhn_digit(body)


def regional_id_valid(value: str) -> bool:
    """Whether a regional identifier has 17 digits and a correct check digit."""
    return len(value) == 17 and value.isdigit() and luhn_digit(value[:-1]) == value[-1]


def _completeness(resource: dict[str, Any]) -> int:
    return sum(1 for key in ("name", "gender", "birthDate", "address", "identifier") if resource.get(key))


def best_source(sources: list[tuple[datetime, dict[str, Any]]]) -> dict[str, Any]:
    """The source whose demographics the golden record shows: most complete, then most recent."""
    return max(sources, key=lambda item: (_completeness(item[1]), item[0]))[1]


def golden_patient(person_id: str, regional: str, links: list[dict[str, Any]],
                   sources: list[tuple[datetime, dict[str, Any]]]) -> dict[str, Any]:
    """The golden Patient of an active person.

    ``links``: per source ``{"patient_id", "grade", "origin", "score"}``; ``sources``: the source
    Patients (their last update and JSON).
    """
    best = best_source(sources) if sources else {}
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": person_id,
        "meta": {"tag": [{"system": EMPI_TAG, "code": GOLDEN_CODE, "display": "区域主索引"}]},
        "identifier": [{"use": "official", "type": {"text": "区域主索引号"}, "system": REGIONAL_ID_SYSTEM,
                        "value": regional}],
        "active": True,
    }
    for key in ("name", "gender", "_gender", "birthDate", "address"):
        if best.get(key):
            resource[key] = best[key]
    resource["link"] = [_link(link) for link in sorted(links, key=lambda item: item["patient_id"])]
    return resource


def _link(link: dict[str, Any]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"url": "grade", "valueCode": link["grade"]},
                                   {"url": "origin", "valueCode": link["origin"]}]
    if link.get("score") is not None:
        parts.append({"url": "score", "valueDecimal": round(float(link["score"]), 2)})
    return {"extension": [{"url": LINK_EXTENSION, "extension": parts}],
            "other": {"reference": f"Patient/{link['patient_id']}"}, "type": "seealso"}


def merged_patient(person_id: str, regional: str, survivor: str) -> dict[str, Any]:
    """The golden Patient of a person merged into ``survivor``: inactive, ``replaced-by`` the survivor."""
    return {
        "resourceType": "Patient",
        "id": person_id,
        "meta": {"tag": [{"system": EMPI_TAG, "code": GOLDEN_CODE, "display": "区域主索引"}]},
        "identifier": [{"use": "old", "type": {"text": "区域主索引号"}, "system": REGIONAL_ID_SYSTEM,
                        "value": regional}],
        "active": False,
        "link": [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}],
    }
