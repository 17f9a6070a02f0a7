"""A small fixed consortium dataset whose indicator values are computed by hand in the tests."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from hub.dashboards.service import Dashboards
from hub.fhir.access import INSTITUTION_TAG
from hub.registry.roster import apply_roster, load_roster
from hub.store.database import Database

ROSTER = Path(__file__).resolve().parents[2] / "hub" / "samples" / "kunshan-roster.yaml"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"
#: 昆山一院 (tertiary) and 玉山镇社区卫生服务中心 (chc) in 市一院片区; 昆山市中医医院 (tertiary) and 锦溪镇卫生院
#: (township) in 中医院片区.
LEAD, CHC, TCM, THC = "org-ks-1", "org-ks-chc-yushan", "org-ks-tcm", "org-ks-thc-jinxi"
ZONE_1, ZONE_TCM = "zone-ks-1", "zone-ks-tcm"


def roster(database: Database) -> Dashboards:
    """The sample roster in the store; the dashboards of ``database``."""
    with database.fhir_service(write=True) as service:
        apply_roster(service, load_roster(ROSTER))
    return Dashboards(database)


def put(database: Database, *resources: dict[str, Any]) -> None:
    """Write resources under their ids (as sources' adapters do)."""
    with database.fhir_service(write=True) as service:
        for resource in resources:
            service.update(resource["resourceType"], resource["id"], resource)


def _meta(institution: str, source: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [{"system": INSTITUTION_TAG, "code": institution}]}
    if source:
        meta["source"] = f"urn:hub:source:{source}"
    return meta


def visit(visit_id: str, institution: str, start: str, visit_class: str = "AMB", *, status: str = "finished",
          patient: str = "p-visit") -> dict[str, Any]:
    """An Encounter at ``institution`` starting at ``start``."""
    return {"resourceType": "Encounter", "id": visit_id, "meta": _meta(institution), "status": status,
            "class": {"system": ACT, "code": visit_class}, "subject": {"reference": f"Patient/{patient}"},
            "period": {"start": start}, "serviceProvider": {"reference": f"Organization/{institution}"}}


def follow_up(visit_id: str, institution: str, patient: str, start: str, program: str = "hypertension") -> dict[str, Any]:
    """A chronic-disease follow-up (慢病随访) Encounter, as the ingest builds it."""
    resource = visit(visit_id, institution, start, patient=patient)
    resource["type"] = [{"coding": [{"system": "urn:hub:follow-up-program", "code": program}]}]
    return resource


def blood_pressure(obs_id: str, visit_id: str, patient: str, when: str, systolic: float, diastolic: float,
                   institution: str = CHC) -> dict[str, Any]:
    """A blood-pressure panel measured in ``visit_id``."""
    def component(code: str, value: float) -> dict[str, Any]:
        return {"code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                  "code": "mm[Hg]"}}
    return {"resourceType": "Observation", "id": obs_id, "meta": _meta(institution), "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "subject": {"reference": f"Patient/{patient}"},
            "encounter": {"reference": f"Encounter/{visit_id}"}, "effectiveDateTime": when,
            "component": [component("8480-6", systolic), component("8462-4", diastolic)]}


def fasting_glucose(obs_id: str, visit_id: str, patient: str, when: str, value: float, *, code: str = "14771-0",
                    unit: str = "mmol/L", institution: str = CHC) -> dict[str, Any]:
    """A fasting glucose measured in ``visit_id``."""
    return {"resourceType": "Observation", "id": obs_id, "meta": _meta(institution), "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{patient}"},
            "encounter": {"reference": f"Encounter/{visit_id}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit}}


def referral(referral_id: str, source: str, target: str, authored: str, direction: str | None,
             status: str = "active", patient: str = "p-ref") -> dict[str, Any]:
    """A referral (转诊) ServiceRequest from ``source`` to ``target``."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": referral_id, "meta": _meta(source), "status": status, "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
        "subject": {"reference": f"Patient/{patient}"}, "authoredOn": authored,
        "requester": {"reference": f"Organization/{source}"}, "performer": [{"reference": f"Organization/{target}"}]}
    if direction:
        resource["code"] = {"coding": [{"system": "urn:hub:referral-direction", "code": direction}]}
    return resource


def figures(dashboards: Dashboards, measure: str, first: str, last: str, unit: str | None = None,
            reach: frozenset[str] | None = None) -> dict[str, tuple[Any, Any, Any]]:
    """code → (numerator, denominator, score) of ``measure`` for ``unit`` over the local days ``first``–``last``."""
    evaluation = dashboards.evaluate(measure, date.fromisoformat(first), date.fromisoformat(last), unit, reach)
    return {f.group.code: (f.numerator, f.denominator, f.score) for f in evaluation.unit.figures}


def children(dashboards: Dashboards, measure: str, first: str, last: str, code: str,
             unit: str | None = None) -> dict[str, Any]:
    """child unit → the score of figure ``code``."""
    evaluation = dashboards.evaluate(measure, date.fromisoformat(first), date.fromisoformat(last), unit, None)
    return {row.key: next(f.score for f in row.figures if f.group.code == code) for row in evaluation.children}
