"""Canonical source records → FHIR R4 resources, built directly as JSON-ready dicts.

No pydantic on this path (validation costs ~200 µs and serialization ~400 µs per
resource): the templates below are checked against ``fhir.resources`` in the tests and
by sampling during runs. Ids are deterministic (:func:`resource_id`), so a rerun
rewrites the same resources instead of adding new ones. Local codes keep their local
code system (``urn:hub:code:<source>:<element>``); the terminology step adds standard
codings next to them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.base import (
    CanonicalRecord,
    ChronicFollowUpRecord,
    DiagnosisRecord,
    EncounterRecord,
    ExamReportRecord,
    LabReportRecord,
    LabResultRecord,
    MedicationOrderRecord,
    PatientRecord,
    ReferralRecord,
)
from hub.coding.normalizer import ETHNICITY_EXTENSION, MAPPING_TAG
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.protected import CITIZEN_ID_SYSTEM, CITIZEN_ID_TYPE_CODE, ID_DOCUMENT_TYPE_SYSTEM

#: uuid5 namespace of the hub's deterministic resource ids.
ID_NAMESPACE = uuid.UUID("6f1c2a4e-3b7d-5e8f-9a0b-1c2d3e4f5a6b")
ADAPTER_TAG = "urn:hub:adapter"
SEX_EXTENSION = "urn:hub:extension:gb-t-2261.1-sex"
SEX_SYSTEM = "urn:oid:2.16.156.10011.2.3.3.4"  # GB/T 2261.1 人的性别代码
RANK_EXTENSION = "urn:hub:extension:diagnosis-rank"
FINDINGS_EXTENSION = "urn:hub:extension:exam-findings"
_GENDER = {"1": "male", "2": "female", "0": "unknown", "9": "unknown"}
_SEX_DISPLAY = {"0": "未知的性别", "1": "男性", "2": "女性", "9": "未说明的性别"}
_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_CLASS = {"outpatient": ("AMB", "门诊"), "emergency": ("EMER", "急诊"), "inpatient": ("IMP", "住院"),
          "checkup": ("AMB", "体检")}
_REPORT_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_OBSERVATION_STATUS = {"registered": "registered", "partial": "preliminary", "preliminary": "preliminary",
                       "final": "final", "amended": "amended", "corrected": "corrected", "cancelled": "cancelled"}
_QUANTITY = re.compile(r"^\s*(<=|>=|<|>)?\s*([+-]?\d+(?:\.\d+)?)\s*$")
_RANGE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(?:-|~|–|—|～)\s*([+-]?\d+(?:\.\d+)?)\s*$")
_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"

Resource = dict[str, Any]


def resource_id(scope: str, kind: str, key: str) -> str:
    """The deterministic id of a source record's resource: the same (scope, kind, key), the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{scope}\x1f{kind}\x1f{key}"))


@dataclass(frozen=True)
class SourceContext:
    """What the templates need to know about the source a record came from."""

    source_id: str
    institution: str
    adapter: str
    adapter_version: str
    mapping_version: str = "none"

    def local_system(self, element: str) -> str:
        """The code system of a local code of this source."""
        return f"urn:hub:code:{self.source_id}:{element}"

    def meta(self) -> dict[str, Any]:
        """``meta`` of every resource: its source system, owning institution and provenance tags."""
        return {
            "source": f"urn:hub:source:{self.source_id}",
            "tag": [
                {"system": INSTITUTION_TAG, "code": self.institution},
                {"system": ADAPTER_TAG, "code": f"{self.adapter}@{self.adapter_version}"},
                {"system": MAPPING_TAG, "code": self.mapping_version},
            ],
        }

    def patient(self, key: str) -> dict[str, str]:
        """A reference to the institution's patient ``key`` (all its systems share patient numbers)."""
        return {"reference": f"Patient/{resource_id(self.institution, 'Patient', key)}"}

    def encounter(self, key: str | None) -> dict[str, str] | None:
        """A reference to the institution's visit ``key``."""
        return {"reference": f"Encounter/{resource_id(self.institution, 'Encounter', key)}"} if key else None

    def organization(self, institution: str | None) -> dict[str, str]:
        """A reference to an institution (default: the source's own)."""
        return {"reference": f"Organization/{institution or self.institution}"}


def _when(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _concept(system: str, code: str | None, display: str | None) -> dict[str, Any]:
    concept: dict[str, Any] = {}
    if code:
        coding = {"system": system, "code": code}
        if display:
            coding["display"] = display
        concept["coding"] = [coding]
    if display:
        concept["text"] = display
    return concept


def _compact(resource: Resource) -> Resource:
    """The resource without empty elements (FHIR forbids nulls and empty arrays)."""
    return {k: v for k, v in resource.items() if v is not None and v != [] and v != {}}


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def patient(record: PatientRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """Patient: hospital record number, citizen ID, name, sex (GB/T 2261.1 kept), birth date, phone."""
    identifiers: list[dict[str, Any]] = [{
        "use": "usual",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": f"urn:hub:mrn:{ctx.institution}", "value": record.key,
    }]
    if record.record_number and record.record_number != record.key:
        identifiers.append({"system": f"urn:hub:record-number:{ctx.institution}", "value": record.record_number})
    if record.id_number:
        identifiers.append({
            "use": "official",
            "type": {"coding": [{"system": ID_DOCUMENT_TYPE_SYSTEM, "code": CITIZEN_ID_TYPE_CODE,
                                 "display": "居民身份证"}]},
            "system": CITIZEN_ID_SYSTEM, "value": record.id_number,
        })
    resource = _compact({
        "resourceType": "Patient",
        "meta": ctx.meta(),
        "identifier": identifiers,
        "active": True,
        "name": [{"use": "official", "text": record.name}],
        "telecom": [{"system": "phone", "value": record.phone, "use": "mobile"}] if record.phone else None,
        "gender": _GENDER[record.sex],
        "_gender": {"extension": [{"url": SEX_EXTENSION, "valueCoding": {
            "system": SEX_SYSTEM, "code": record.sex, "display": _SEX_DISPLAY[record.sex]}}]},
        "birthDate": _when(record.birth_date),
        "address": [{"text": record.address}] if record.address else None,
        "maritalStatus": _concept(ctx.local_system("marital-status"), record.marital_status, None)
        if record.marital_status else None,
        "extension": [{"url": ETHNICITY_EXTENSION, "valueCodeableConcept": {"coding": [{
            "system": ctx.local_system("ethnicity"), "code": record.ethnicity}]}}] if record.ethnicity else None,
        "managingOrganization": ctx.organization(None),
    })
    return [("Patient", resource_id(ctx.institution, "Patient", record.key), resource)]


def encounter(record: EncounterRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """Encounter: class (AMB/EMER/IMP), kind, period, department, attending doctor."""
    code, display = _CLASS[record.encounter_class]
    open_stay = record.encounter_class == "inpatient" and record.end is None
    participant = None
    if record.attending_name or record.attending_code:
        individual: dict[str, Any] = {"display": record.attending_name} if record.attending_name else {}
        if record.attending_code:
            individual["identifier"] = {"system": ctx.local_system("staff"), "value": record.attending_code}
        participant = [{"individual": individual}]
    resource = _compact({
        "resourceType": "Encounter",
        "meta": ctx.meta(),
        "identifier": [{"system": f"urn:hub:visit:{ctx.institution}", "value": record.key}],
        "status": "in-progress" if open_stay else "finished",
        "class": {"system": _ACT, "code": code, "display": display},
        "type": [_concept("urn:hub:encounter-kind", record.encounter_class, display)],
        "serviceType": _concept(ctx.local_system("department"), record.department_code, record.department_name)
        or None,
        "subject": ctx.patient(record.patient_key),
        "participant": participant,
        "period": _compact({"start": _when(record.start), "end": _when(record.end)}),
        "serviceProvider": ctx.organization(None),
    })
    return [("Encounter", resource_id(ctx.institution, "Encounter", record.key), resource)]


def diagnosis(record: DiagnosisRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """Condition (encounter diagnosis) with the local or ICD-10 code as the source gave it."""
    resource = _compact({
        "resourceType": "Condition",
        "meta": ctx.meta(),
        "extension": [{"url": RANK_EXTENSION, "valueCode": record.rank}],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "code": "confirmed"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "encounter-diagnosis"}]}],
        "code": _concept(ctx.local_system("diagnosis"), record.code, record.display),
        "subject": ctx.patient(record.patient_key),
        "encounter": ctx.encounter(record.encounter_key),
        "recordedDate": _when(record.recorded_at),
    })
    return [("Condition", resource_id(ctx.source_id, "Diagnosis", record.key), resource)]


def _value(result: LabResultRecord) -> dict[str, Any]:
    found = _QUANTITY.match(result.value)
    if found and (number := _decimal(found.group(2))) is not None:
        quantity: dict[str, Any] = {"value": number}
        if found.group(1):
            quantity["comparator"] = found.group(1)
        if result.unit:
            quantity["unit"] = result.unit
        return {"valueQuantity": quantity}
    return {"valueString": result.value}


def _reference_range(result: LabResultRecord) -> list[dict[str, Any]] | None:
    if not result.reference_range:
        return None
    entry: dict[str, Any] = {"text": result.reference_range}
    found = _RANGE.match(result.reference_range)
    if found:
        for name, text in (("low", found.group(1)), ("high", found.group(2))):
            quantity: dict[str, Any] = {"value": Decimal(text)}
            if result.unit:
                quantity["unit"] = result.unit
            entry[name] = quantity
    return [entry]


def lab_report(record: LabReportRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """DiagnosticReport (LAB) and one Observation per result, all of one report."""
    subject = ctx.patient(record.patient_key)
    context = ctx.encounter(record.encounter_key)
    performer = [ctx.organization(record.performing_institution)]
    effective = _when(record.collected_at or record.report_time)
    issued = _when(record.report_time)
    status = _OBSERVATION_STATUS[record.status]
    out: list[tuple[str, str, Resource]] = []
    for result in record.results:
        observation = _compact({
            "resourceType": "Observation",
            "meta": ctx.meta(),
            "status": status,
            "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": _concept(ctx.local_system("lab-item"), result.item_code, result.item_name),
            "subject": subject,
            "encounter": context,
            "effectiveDateTime": effective,
            "issued": issued,
            "performer": performer,
            **_value(result),
            "interpretation": [{"coding": [{"system": _INTERPRETATION, "code": result.abnormal_flag}]}]
            if result.abnormal_flag else None,
            "specimen": {"display": record.specimen} if record.specimen else None,
            "referenceRange": _reference_range(result),
        })
        out.append(("Observation", resource_id(ctx.source_id, "LabResult", f"{record.key}\x1f{result.key}"),
                     observation))
    report = _compact({
        "resourceType": "DiagnosticReport",
        "meta": ctx.meta(),
        "identifier": [{"system": f"urn:hub:lab-report:{ctx.institution}", "value": record.key}],
        "status": record.status,
        "category": [{"coding": [{"system": _REPORT_CATEGORY, "code": "LAB", "display": "Laboratory"}]}],
        "code": _concept(ctx.local_system("lab-panel"), record.report_code, record.report_name),
        "subject": subject,
        "encounter": context,
        "effectiveDateTime": effective,
        "issued": issued,
        "performer": performer,
        "result": [{"reference": f"Observation/{rid}"} for _t, rid, _r in out],
    })
    return [("DiagnosticReport", resource_id(ctx.source_id, "LabReport", record.key), report), *out]


_EXAM_CATEGORY = {"ECG": ("EC", "Electrocardiac"), "PATH": ("PAT", "Pathology (gross & histopath, not surgical)")}


def exam_report(record: ExamReportRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """DiagnosticReport (imaging, ECG or pathology) and, with a study UID, its ImagingStudy."""
    subject = ctx.patient(record.patient_key)
    out: list[tuple[str, str, Resource]] = []
    if record.study_uid:
        study = _compact({
            "resourceType": "ImagingStudy",
            "meta": ctx.meta(),
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{record.study_uid}"}],
            "status": "cancelled" if record.status == "cancelled" else "available",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": record.modality}]
            if record.modality != "PATH" else None,
            "subject": subject,
            "encounter": ctx.encounter(record.encounter_key),
            "description": record.exam_name,
        })
        out.append(("ImagingStudy", resource_id(ctx.source_id, "ImagingStudy", record.key), study))
    code, display = _EXAM_CATEGORY.get(record.modality, ("RAD", "Radiology"))
    report = _compact({
        "resourceType": "DiagnosticReport",
        "meta": ctx.meta(),
        "extension": [{"url": FINDINGS_EXTENSION, "valueString": record.findings}] if record.findings else None,
        "identifier": [{"system": f"urn:hub:exam-report:{ctx.institution}", "value": record.key}],
        "status": record.status,
        "category": [{"coding": [{"system": _REPORT_CATEGORY, "code": code, "display": display}]},
                     _concept("http://dicom.nema.org/resources/ontology/DCM", record.modality, None)],
        "code": _concept(ctx.local_system("exam-item"), record.exam_code, record.exam_name),
        "subject": subject,
        "encounter": ctx.encounter(record.encounter_key),
        "effectiveDateTime": _when(record.report_time),
        "issued": _when(record.report_time),
        "performer": [ctx.organization(record.performing_institution)],
        "imagingStudy": [{"reference": f"ImagingStudy/{out[0][1]}"}] if out else None,
        "conclusion": record.impression,
    })
    if record.body_site:
        report["code"] = {**report["code"], "text": f"{record.exam_name}（{record.body_site}）"}
    return [("DiagnosticReport", resource_id(ctx.source_id, "ExamReport", record.key), report), *out]


def medication_order(record: MedicationOrderRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """MedicationRequest with the local drug code and the dosage as the source wrote it."""
    parts = [p for p in (f"{record.dose or ''}{record.dose_unit or ''}", record.route, record.frequency) if p]
    dosage: dict[str, Any] = {"text": " ".join(parts)} if parts else {}
    if record.route:
        dosage["route"] = {"text": record.route}
    if record.frequency:
        dosage["timing"] = {"code": {"text": record.frequency}}
    dose = _decimal(record.dose) if record.dose else None
    if dose is not None:
        quantity: dict[str, Any] = {"value": dose}
        if record.dose_unit:
            quantity["unit"] = record.dose_unit
        dosage["doseAndRate"] = [{"doseQuantity": quantity}]
    resource = _compact({
        "resourceType": "MedicationRequest",
        "meta": ctx.meta(),
        "status": record.status if record.status != "final" else "completed",
        "intent": "order",
        "medicationCodeableConcept": _concept(ctx.local_system("drug"), record.drug_code, record.drug_name),
        "subject": ctx.patient(record.patient_key),
        "encounter": ctx.encounter(record.encounter_key),
        "authoredOn": _when(record.ordered_at),
        "dosageInstruction": [dosage] if dosage else None,
    })
    return [("MedicationRequest", resource_id(ctx.source_id, "MedicationOrder", record.key), resource)]


def referral(record: ReferralRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """ServiceRequest (referral) from one institution to another, up (上转) or down (下转)."""
    display = "上转" if record.direction == "up" else "下转"
    resource = _compact({
        "resourceType": "ServiceRequest",
        "meta": ctx.meta(),
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005",
                                  "display": "Patient referral"}]}],
        "code": _concept("urn:hub:referral-direction", record.direction, display),
        "subject": ctx.patient(record.patient_key),
        "authoredOn": _when(record.referred_at),
        "requester": ctx.organization(record.from_institution),
        "performer": [ctx.organization(record.to_institution)],
        "reasonCode": [{"text": record.reason}] if record.reason else None,
    })
    return [("ServiceRequest", resource_id(ctx.source_id, "Referral", record.key), resource)]


_VISIT_CLASS = {"家庭": ("HH", "home health"), "电话": ("VR", "virtual")}
_PROGRAM = {"hypertension": "高血压随访", "diabetes": "2型糖尿病随访"}


def chronic_follow_up(record: ChronicFollowUpRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """A follow-up Encounter with its blood-pressure panel and fasting glucose Observations."""
    code, display = _VISIT_CLASS.get(record.visit_kind or "", ("AMB", "ambulatory"))
    visit_id = resource_id(ctx.source_id, "ChronicFollowUp", record.key)
    subject = ctx.patient(record.patient_key)
    when = _when(record.visited_at)
    visit = _compact({
        "resourceType": "Encounter",
        "meta": ctx.meta(),
        "status": "finished",
        "class": {"system": _ACT, "code": code, "display": display},
        "type": [_concept("urn:hub:follow-up-program", record.program, _PROGRAM[record.program])],
        "subject": subject,
        "period": {"start": when},
        "serviceProvider": ctx.organization(None),
    })
    out: list[tuple[str, str, Resource]] = [("Encounter", visit_id, visit)]
    vital = [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "vital-signs"}]}]
    if record.systolic is not None and record.diastolic is not None:
        out.append(("Observation", resource_id(ctx.source_id, "ChronicFollowUp:bp", record.key), {
            "resourceType": "Observation", "meta": ctx.meta(), "status": "final", "category": vital,
            "code": {"coding": [{"system": _LOINC, "code": "85354-9", "display": "Blood pressure panel"}],
                     "text": "血压"},
            "subject": subject, "encounter": {"reference": f"Encounter/{visit_id}"}, "effectiveDateTime": when,
            "component": [
                {"code": {"coding": [{"system": _LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": {"value": record.systolic, "unit": "mmHg", "system": _UCUM, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": _LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": {"value": record.diastolic, "unit": "mmHg", "system": _UCUM, "code": "mm[Hg]"}},
            ],
        }))
    if record.fasting_glucose is not None:
        out.append(("Observation", resource_id(ctx.source_id, "ChronicFollowUp:glucose", record.key), {
            "resourceType": "Observation", "meta": ctx.meta(), "status": "final",
            "category": [{"coding": [{"system": _OBSERVATION_CATEGORY, "code": "laboratory"}]}],
            "code": {"coding": [{"system": _LOINC, "code": "14771-0",
                                 "display": "Fasting glucose [Moles/volume] in Serum or Plasma"}], "text": "空腹血糖"},
            "subject": subject, "encounter": {"reference": f"Encounter/{visit_id}"}, "effectiveDateTime": when,
            "valueQuantity": {"value": Decimal(str(record.fasting_glucose)), "unit": "mmol/L", "system": _UCUM,
                              "code": "mmol/L"},
        }))
    return out


BUILDERS: dict[type, Callable[[Any, SourceContext], list[tuple[str, str, Resource]]]] = {
    PatientRecord: patient,
    EncounterRecord: encounter,
    DiagnosisRecord: diagnosis,
    LabReportRecord: lab_report,
    ExamReportRecord: exam_report,
    MedicationOrderRecord: medication_order,
    ReferralRecord: referral,
    ChronicFollowUpRecord: chronic_follow_up,
}


def build_resources(record: CanonicalRecord, ctx: SourceContext) -> list[tuple[str, str, Resource]]:
    """The FHIR resources (type, id, JSON dict) of one canonical record."""
    return BUILDERS[type(record)](record, ctx)
