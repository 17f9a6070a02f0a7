"""Readers (阅片医师) as FHIR: a ``Practitioner`` and a ``PractitionerRole`` at a reading center.

The PractitionerRole says who may read what: ``organization`` the center's institution, ``code``
:data:`ROLE_SYSTEM` ``reader`` (or ``supervisor``, who also reads), ``specialty`` the DICOM modalities
(:data:`DCM`) and subspecialties (:data:`SUBSPECIALTY_SYSTEM`) they are qualified for, and the extension
:data:`CAPACITY_URL` the open tasks they take at most. Their shift and load are the hub's
(:class:`hub.store.telediagnosis.ReaderLoad`). A roster file (``hub telediagnosis readers FILE``) writes
both resources per reader::

    readers:
      - id: pr-img-wang          # the PractitionerRole (and Practitioner) id
        name: 王建国
        center: ks-imaging
        modalities: [CT, MR, DX]
        subspecialties: [neuro]
        capacity: 20
        supervisor: false
        on_shift: true           # start a shift now
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from hub.errors import InvalidRequest
from hub.fhir.criteria import TokenCriterion
from hub.fhir.repository import FhirRepository, SearchSpec
from hub.store.type_cache import TypeCache
from hub.telediagnosis.config import ID_PATTERN, TeleConfig, parse_text

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ROLE_SYSTEM = "urn:hub:telediagnosis:role"
SUBSPECIALTY_SYSTEM = "urn:hub:telediagnosis:subspecialty"
CAPACITY_URL = "urn:hub:telediagnosis:capacity"
DEFAULT_CAPACITY = 10
_ROLE_DISPLAY = {"reader": "阅片医师", "supervisor": "诊断中心主任"}


@dataclass(frozen=True)
class Reader:
    """What routing needs of a reader."""

    role_id: str
    name: str
    institution: str
    modalities: frozenset[str]
    subspecialties: frozenset[str]
    capacity: int
    supervisor: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"reader": f"PractitionerRole/{self.role_id}", "name": self.name, "institution": self.institution,
                "modalities": sorted(self.modalities), "subspecialties": sorted(self.subspecialties),
                "capacity": self.capacity, "supervisor": self.supervisor}


def reader_of(role: dict[str, Any]) -> Reader | None:
    """The reader a PractitionerRole describes (None: not an active reading role at an Organization)."""
    if role.get("active") is False:
        return None
    codes = {c.get("code") for concept in role.get("code") or () for c in concept.get("coding") or ()
             if c.get("system") == ROLE_SYSTEM}
    reference = (role.get("organization") or {}).get("reference") or ""
    if not codes & {"reader", "supervisor"} or not reference.startswith("Organization/"):
        return None
    specialties = [c for concept in role.get("specialty") or () for c in concept.get("coding") or ()]
    capacity = next((e.get("valueInteger") for e in role.get("extension") or () if e.get("url") == CAPACITY_URL),
                    DEFAULT_CAPACITY)
    return Reader(
        role_id=role["id"], name=str((role.get("practitioner") or {}).get("display") or role["id"]),
        institution=reference.split("/", 1)[1],
        modalities=frozenset(c["code"] for c in specialties if c.get("system") == DCM and c.get("code")),
        subspecialties=frozenset(c["code"] for c in specialties if c.get("system") == SUBSPECIALTY_SYSTEM
                                 and c.get("code")),
        capacity=int(capacity) if isinstance(capacity, int) and capacity > 0 else DEFAULT_CAPACITY,
        supervisor="supervisor" in codes)


def load_readers(repository: FhirRepository) -> dict[str, Reader]:
    """Every reader as stored now, by PractitionerRole id."""
    found = {}
    spec = SearchSpec("PractitionerRole", (TokenCriterion("role", ((ROLE_SYSTEM, "reader"), (ROLE_SYSTEM, "supervisor"))),),
                      count=100_000)
    for stored in repository.search(spec):
        reader = reader_of(orjson.loads(stored.content)) if stored.content else None
        if reader is not None:
            found[reader.role_id] = reader
    return found


def reader_cache() -> TypeCache[dict[str, Reader]]:
    """The readers of one database, read again when a PractitionerRole changed (in any process)."""
    return TypeCache("PractitionerRole", load_readers, {})


def roster_resources(raw: bytes | str, config: TeleConfig) -> tuple[list[dict[str, Any]], dict[str, bool]]:
    """The Practitioner and PractitionerRole of each reader of a roster file, and the shifts it starts or ends."""
    document = parse_text(raw)
    entries = document.get("readers")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("The reader roster must be a mapping with a non-empty 'readers' list")
    problems: list[str] = []
    resources: list[dict[str, Any]] = []
    shifts: dict[str, bool] = {}
    for index, entry in enumerate(entries):
        label = f"readers[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not ID_PATTERN.match(entry["id"]):
            problems.append(f"{label}: an id (letters, digits, '-', '.') is required")
            continue
        label = f"readers[{entry['id']}]"
        before = len(problems)
        center = config.center(str(entry.get("center")))
        if center is None:
            problems.append(f"{label}: center '{entry.get('center')}' is not a center of the configuration")
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{label}: name is required")
        modalities, subspecialties = entry.get("modalities"), entry.get("subspecialties", [])
        if not isinstance(modalities, list) or not modalities \
                or not {str(m) for m in modalities} <= center.modalities:
            problems.append(f"{label}: modalities must be some of the center's ({', '.join(sorted(center.modalities))})")
        if not isinstance(subspecialties, list) or not all(isinstance(s, str) and s.strip() for s in subspecialties):
            problems.append(f"{label}: subspecialties must be a list of codes")
        capacity = entry.get("capacity", DEFAULT_CAPACITY)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            problems.append(f"{label}: capacity must be a whole number of tasks, at least 1")
        for flag in ("supervisor", "on_shift"):
            if flag in entry and not isinstance(entry[flag], bool):
                problems.append(f"{label}: {flag} must be true or false")
        if len(problems) > before:
            continue
        resources.extend(_reader_resources(entry, center.institution, capacity))
        if "on_shift" in entry:
            shifts[entry["id"]] = entry["on_shift"]
    if problems:
        raise InvalidRequest(f"The reader roster has {len(problems)} problem(s): " + "; ".join(problems[:20]))
    return resources, shifts


def _reader_resources(entry: dict[str, Any], institution: str, capacity: int) -> list[dict[str, Any]]:
    role_id, name = entry["id"], entry["name"].strip()
    code = "supervisor" if entry.get("supervisor") is True else "reader"
    specialty = [{"coding": [{"system": DCM, "code": str(m)}]} for m in entry["modalities"]]
    specialty += [{"coding": [{"system": SUBSPECIALTY_SYSTEM, "code": str(s)}]}
                  for s in entry.get("subspecialties") or ()]
    practitioner = {"resourceType": "Practitioner", "id": role_id, "active": True, "name": [{"text": name}]}
    role = {
        "resourceType": "PractitionerRole", "id": role_id, "active": True,
        "extension": [{"url": CAPACITY_URL, "valueInteger": capacity}],
        "practitioner": {"reference": f"Practitioner/{role_id}", "display": name},
        "organization": {"reference": f"Organization/{institution}"},
        "code": [{"coding": [{"system": ROLE_SYSTEM, "code": code, "display": _ROLE_DISPLAY[code]}]}],
        "specialty": specialty,
    }
    return [practitioner, role]
