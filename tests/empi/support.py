"""Source Patients as member institutions record them, and running the EMPI over them."""

from __future__ import annotations

from typing import Any

from hub.empi.engine import Engine, RunStats
from hub.fhir import jsonio
from hub.privacy.citizen_id import check_character
from hub.store.database import Database

CITIZEN_ID = "urn:oid:2.16.156.10011.1.3"


def citizen_id(first17: str) -> str:
    """A valid 18-character number (check character computed)."""
    return first17 + check_character(first17)


#: 张伟's number (320583 昆山, 1980-05-12, sequence 003: a man).
ZHANG_WEI_ID = citizen_id("32058319800512003")


def source_patient(institution: str, mrn: str, name: str, *, birth: str | None = "1980-05-12",
                   gender: str | None = "male", id_number: str | None = None, phone: str | None = None,
                   address: str | None = None, tags: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A Patient of ``institution`` with record number ``mrn`` (id ``<institution>-<mrn>``)."""
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": f"{institution}-{mrn}",
        "meta": {"tag": [{"system": "urn:hub:institution", "code": institution}, *(tags or [])]},
        "identifier": [{"system": f"urn:hub:mrn:{institution}", "value": mrn}],
        "name": [{"use": "official", "text": name}],
    }
    if id_number:
        resource["identifier"].append({"system": CITIZEN_ID, "value": id_number})
    if gender:
        resource["gender"] = gender
    if birth:
        resource["birthDate"] = birth
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone, "use": "mobile"}]
    if address:
        resource["address"] = [{"text": address}]
    return resource


def store(database: Database, *patients: dict[str, Any]) -> None:
    """Write the Patients (create or update) in one transaction."""
    with database.fhir_service(write=True) as service:
        for patient in patients:
            service.update("Patient", patient["id"], patient)


def run_empi(database: Database) -> RunStats:
    """Place every queued Patient write."""
    return Engine(database).run()


def person_of(database: Database, patient_id: str) -> str:
    """The person a source Patient is under."""
    with database.empi(write=False) as empi:
        return empi.records([patient_id])[patient_id].person_id


def read(database: Database, resource_type: str, resource_id: str) -> dict[str, Any] | None:
    """A current resource, or None."""
    with database.unit_of_work(write=False) as repository:
        stored = repository.read_current(resource_type, resource_id)
    if stored is None or stored.deleted or stored.content is None:
        return None
    return jsonio.loads_stored(stored.content)


def open_reviews(database: Database) -> list[dict[str, Any]]:
    """The open review items, highest score first."""
    with database.empi(write=False) as empi:
        return empi.reviews(status="open", limit=100)[0]
