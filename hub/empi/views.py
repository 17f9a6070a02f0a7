"""What governance staff see: review items side by side, persons with their sources and history.

Names, sexes, birth dates and addresses are shown as recorded (the reviewer must compare them);
ID and phone numbers are masked (``320583********0011``, ``138****5678``): the comparison says
whether they agree, which is all a decision needs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.empi.features import institution_of, name_text
from hub.empi.golden import REGIONAL_ID_SYSTEM
from hub.errors import NotFound
from hub.fhir import jsonio
from hub.fhir.protected import PersonalDataProtector
from hub.fhir.service import FhirService
from hub.privacy import mask_id_number, mask_phone
from hub.store.empi import EmpiStore, RecordRow

_SEX_TEXT = {"male": "男", "female": "女", "other": "其他", "unknown": "未知"}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def patient_summary(resource: dict[str, Any] | None, protector: PersonalDataProtector) -> dict[str, Any]:
    """The fields a reviewer compares, ID and phone masked."""
    if resource is None:
        return {"missing": True}
    citizen_id = next((str(i.get("value") or "") for i in resource.get("identifier") or ()
                       if isinstance(i, dict) and protector.is_citizen_id(i)), "")
    record_numbers = [str(i.get("value")) for i in resource.get("identifier") or ()
                      if isinstance(i, dict) and str(i.get("system", "")).startswith("urn:hub:mrn:")]
    phones = [mask_phone(str(t.get("value") or "")) for t in resource.get("telecom") or ()
              if isinstance(t, dict) and t.get("system") in ("phone", "sms") and t.get("value")]
    address = next((a.get("text") or "".join(a.get("line") or ()) for a in resource.get("address") or ()
                    if isinstance(a, dict)), "")
    return {
        "id": resource.get("id"), "reference": f"Patient/{resource.get('id')}", "institution": institution_of(resource) or None, "record_numbers": record_numbers,
        "name": name_text(resource), "sex": _SEX_TEXT.get(resource.get("gender") or "", ""),
        "birth_date": resource.get("birthDate") or "", "id_number": mask_id_number(citizen_id) if citizen_id else "",
        "phones": phones, "address": address,
    }


def _patients(service: FhirService, ids: list[str]) -> dict[str, dict[str, Any]]:
    stored = service.repository.read_current_many([("Patient", i) for i in ids])
    return {key[1]: jsonio.loads_stored(s.content) for key, s in stored.items()
            if s.content is not None and not s.deleted}


def _link(record: RecordRow, resource: dict[str, Any] | None, protector: PersonalDataProtector) -> dict[str, Any]:
    return {"patient": record.patient_id, "grade": record.grade, "origin": record.origin,
            "score": round(record.score, 2) if record.score is not None else None,
            "summary": patient_summary(resource, protector)}


def review_view(service: FhirService, store: EmpiStore, item: dict[str, Any]) -> dict[str, Any]:
    """A review item with the record and the candidate person's sources side by side."""
    protector = service.protector
    assert protector is not None
    members = store.members([item["candidate_person"]])
    patients = _patients(service, [item["patient_id"], *(m.patient_id for m in members)])
    person = store.persons([item["candidate_person"]]).get(item["candidate_person"])
    return {
        "id": item["id"], "version": item["version"], "status": item["status"], "score": round(item["score"], 2),
        "created": _iso(item["created"]), "decided_by": item["decided_by"], "decided_at": _iso(item["decided_at"]),
        "reason": item["reason"], "comparison": item["comparison"],
        "record": patient_summary(patients.get(item["patient_id"]), protector),
        "candidate": {
            "person": item["candidate_person"], "regional_id": person.regional_id if person else None,
            "status": person.status if person else None,
            "sources": [_link(m, patients.get(m.patient_id), protector) for m in members],
        },
    }


def person_view(service: FhirService, store: EmpiStore, person_id: str) -> dict[str, Any]:
    """A person: its regional identifier, status, sources (masked summaries) and history."""
    person = store.persons([person_id]).get(person_id)
    if person is None:
        found = store.person_by_regional_id(person_id)
        if found is None:
            raise NotFound(f"No regional person {person_id} (a person id or a regional identifier)")
        person = found
    protector = service.protector
    assert protector is not None
    members = store.members([person.person_id])
    patients = _patients(service, [m.patient_id for m in members])
    return {
        "person": person.person_id, "regional_id": person.regional_id, "regional_id_system": REGIONAL_ID_SYSTEM,
        "status": person.status, "merged_into": person.merged_into, "golden": {"reference": f"Patient/{person.person_id}"},
        "created": _iso(person.created), "updated": _iso(person.updated),
        "sources": [_link(m, patients.get(m.patient_id), protector) for m in members],
        "history": [{**event, "at": _iso(event["at"])} for event in store.history(person_id=person.person_id)],
    }


def person_of_patient(store: EmpiStore, patient_id: str) -> str:
    """The person a source (or golden) Patient belongs to."""
    record = store.records([patient_id]).get(patient_id)
    if record is not None:
        return record.person_id
    if store.persons([patient_id]):
        return patient_id
    raise NotFound(f"Patient/{patient_id} is not in the master patient index (not matched yet, or unknown)")
