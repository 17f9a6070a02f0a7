"""What an exam to be read is, taken from the FHIR resource a site's PACS or ECG system sent.

Two paths (分布式检查、集中式诊断):

- **基层检查 → 中心诊断**: an ``ImagingStudy`` (``available``) done at a member site; the Task's focus is
  the ImagingStudy.
- **基层开单 → 中心检查 → 中心诊断**: a ``ServiceRequest`` (``active`` order) from a site whose
  ``performer`` is a reading center; the Task's focus is the order, and the ImagingStudy the center makes
  for it later (``basedOn`` the order) becomes the Task's input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hub.fhir.access import INSTITUTION_TAG
from hub.telediagnosis.config import PRIORITIES
from hub.telediagnosis.readers import DCM

EXAM_ITEM = "urn:hub:exam-item"
SNOMED = "http://snomed.info/sct"


@dataclass(frozen=True)
class ExamFacts:
    """An exam as the routing and the Task need it."""

    focus: str
    order_ref: str | None
    patient: str | None
    site: str
    modality: str
    body_site: str | None
    priority: str
    #: For an order sent to a center: the center's institution.
    performer: str | None = None


def owner_institution(resource: dict[str, Any]) -> str | None:
    """The institution whose data the resource is (its first institution tag)."""
    for tag in (resource.get("meta") or {}).get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == INSTITUTION_TAG and tag.get("code"):
            return str(tag["code"])
    return None


def _reference(value: Any, prefix: str) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    return reference if isinstance(reference, str) and reference.startswith(prefix) else None


def _body_site(concepts: list[Any]) -> str | None:
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        codings = concept.get("coding") if "coding" in concept else [concept]  # a CodeableConcept or a Coding
        for coding in codings or ():
            if isinstance(coding, dict) and (coding.get("code") or coding.get("display")):
                return str(coding.get("code") or coding["display"])
        if concept.get("text"):
            return str(concept["text"])
    return None


def _priority(value: Any) -> str:
    return value if value in PRIORITIES else "routine"


def study_facts(study: dict[str, Any], order: dict[str, Any] | None) -> ExamFacts | None:
    """The exam an ImagingStudy is (None: not finished, or no modality); ``order`` the ServiceRequest it is
    based on, when stored (its priority counts)."""
    if study.get("status") != "available":
        return None
    modalities = [c.get("code") for c in study.get("modality") or () if isinstance(c, dict)]
    modalities += [s.get("modality", {}).get("code") for s in study.get("series") or () if isinstance(s, dict)]
    modality = next((str(m) for m in modalities if m), None)
    site = owner_institution(study)
    if modality is None or site is None:
        return None
    order_ref = next((r for r in (_reference(b, "ServiceRequest/") for b in study.get("basedOn") or ()) if r), None)
    body = _body_site([s.get("bodySite") for s in study.get("series") or () if isinstance(s, dict)])
    if order is not None:
        body = _body_site(order.get("bodySite") or []) or body
    return ExamFacts(f"ImagingStudy/{study['id']}", order_ref, _reference(study.get("subject"), "Patient/"), site,
                     modality, body, _priority((order or {}).get("priority")))


def order_facts(order: dict[str, Any], item_properties: Callable[[str], tuple[str, str] | None]) -> ExamFacts | None:
    """The exam an order sent to a reading center asks for (None: not an active order with a performer
    Organization, or its code names no modality). ``item_properties`` gives an exam item's (modality, body
    site) (:data:`EXAM_ITEM` codes)."""
    if order.get("status") != "active" or order.get("intent") not in ("order", "original-order", "filler-order"):
        return None
    performer = next((r for r in (_reference(p, "Organization/") for p in order.get("performer") or ()) if r), None)
    site = owner_institution(order)
    if performer is None or site is None:
        return None
    modality, body = None, _body_site(order.get("bodySite") or [])
    for coding in [c for concept in (order.get("code"), *(order.get("category") or ())) if isinstance(concept, dict)
                   for c in concept.get("coding") or () if isinstance(c, dict)]:
        if coding.get("system") == EXAM_ITEM and coding.get("code"):
            found = item_properties(str(coding["code"]))
            if found is not None:
                modality, body = found[0], body or found[1]
                break
        if coding.get("system") == DCM and coding.get("code"):
            modality = str(coding["code"])
            break
    if modality is None:
        return None
    return ExamFacts(f"ServiceRequest/{order['id']}", f"ServiceRequest/{order['id']}",
                     _reference(order.get("subject"), "Patient/"), site, modality, body,
                     _priority(order.get("priority")), performer.split("/", 1)[1])
