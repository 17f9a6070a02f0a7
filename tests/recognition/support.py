"""A consortium with a recognition catalogue, quality-control records and patients at several institutions."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.instants import now_utc
from hub.fhir.search_values import local_zone
from hub.recognition.check import CheckRequest, CheckResult
from hub.recognition.service import Recognition, install
from hub.registry.roster import apply_roster, load_roster
from hub.store.database import Database
from tests.empi.support import ZHANG_WEI_ID, run_empi, source_patient, store

ROSTER = Path(__file__).resolve().parents[2] / "hub" / "samples" / "kunshan-roster.yaml"
CATALOGUE = Path(__file__).resolve().parents[2] / "hub" / "samples" / "recognition-catalogue.yaml"
LOINC = "http://loinc.org"
#: 昆山市第一人民医院 (tertiary, passed 室间质评 for glucose), 昆山市中医医院 (tertiary, failed it), 玉山镇社区
#: 卫生服务中心 (chc, orders), and a hospital of another consortium of the same region.
HOSPITAL_A, FAILED_LAB, COMMUNITY_B, OTHER_CONSORTIUM = "org-ks-1", "org-ks-tcm", "org-ks-chc-yushan", "org-other-1"
#: This (local) year and the one before.
YEARS = (now_utc().astimezone(local_zone()).year, now_utc().astimezone(local_zone()).year - 1)


def consortium(database: Database) -> Recognition:
    """The sample roster, another consortium, the sample catalogue and EQA records; the recognition service."""
    recognition = install(database)
    with database.fhir_service(write=True) as service:
        apply_roster(service, load_roster(ROSTER))
        for org in ({"resourceType": "Organization", "id": "consortium-other", "name": "另一医共体",
                     "type": [{"coding": [{"system": "urn:hub:organization-kind", "code": "consortium"}]}],
                     "partOf": {"reference": "Organization/region-ks"}},
                    {"resourceType": "Organization", "id": OTHER_CONSORTIUM, "name": "另一医共体医院",
                     "type": [{"coding": [{"system": "urn:hub:organization-kind", "code": "institution"}]},
                              {"coding": [{"system": "urn:hub:institution-level", "code": "tertiary"}]}],
                     "partOf": {"reference": "Organization/consortium-other"}}):
            service.update("Organization", org["id"], org)
    recognition.load_catalogue(CATALOGUE.read_bytes(), "test")
    # this year's and last year's rounds alike: a result of a few days ago may fall in either
    recognition.save_eqa([{"institution": institution, "item": "glu", "year": year, "passed": passed,
                           "scheme": "江苏省临床检验中心"}
                          for year in YEARS
                          for institution, passed in ((HOSPITAL_A, True), (FAILED_LAB, False), (OTHER_CONSORTIUM, True))],
                         "test")
    return recognition


def zhang_wei(database: Database) -> str:
    """张伟 at hospital A and at community center B (the same ID number), matched; B's Patient id."""
    store(database, source_patient(HOSPITAL_A, "1001", "张伟", id_number=ZHANG_WEI_ID),
          source_patient(COMMUNITY_B, "B77", "张伟", id_number=ZHANG_WEI_ID))
    run_empi(database)
    return f"{COMMUNITY_B}-B77"


def glucose(result_id: str, patient_id: str, performer: str, value: float, unit: str, when: datetime,
            status: str = "final", code: str = "2345-7") -> dict[str, Any]:
    """A glucose Observation done at ``performer``."""
    ucum = {"mg/dL": "mg/dL", "mmol/L": "mmol/L"}.get(unit)
    quantity: dict[str, Any] = {"value": value, "unit": unit}
    if ucum:
        quantity.update({"system": "http://unitsofmeasure.org", "code": ucum})
    return {"resourceType": "Observation", "id": result_id, "status": status,
            "meta": {"tag": [{"system": INSTITUTION_TAG, "code": performer}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory"}]}],
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": when.isoformat(), "performer": [{"reference": f"Organization/{performer}"}],
            "valueQuantity": quantity}


def put(database: Database, *resources: dict[str, Any]) -> None:
    """Write resources under their ids."""
    with database.fhir_service(write=True) as service:
        for resource in resources:
            service.update(resource["resourceType"], resource["id"], resource)


def check(recognition: Recognition, patient: str, code: str = f"{LOINC}|2345-7", *,
          institution: str = COMMUNITY_B, at: datetime | None = None, unit: str | None = None) -> CheckResult:
    """One check, recorded."""
    [result] = recognition.check([CheckRequest(patient, institution, code, at, unit)], "test")
    return result


def ago(**delta: float) -> datetime:
    """A moment before now."""
    return now_utc() - timedelta(**delta)
