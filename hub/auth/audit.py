"""The audit trail's meaning: an IHE BALP-style ``AuditEvent`` for each interaction with data.

Who (the client and its network address), what (the resource or the query, masked),
which patients (those in the request path and in the response), when and the outcome.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from hub.fhir.instants import format_instant
from hub.privacy import mask_name, mask_text

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
#: Query parameters whose values are personal names or contact data (masked in the trail).
_NAME_PARAMS = ("name", "family", "given", "phonetic", "address", "email", "telecom", "phone")
#: Patients named in a request or response body: Patient resources, references and entry URLs.
_PATIENT_IN_BODY = re.compile(rb'"resourceType"\s*:\s*"Patient"\s*,\s*"id"\s*:\s*"([A-Za-z0-9\-.]{1,64})"'
                              rb'|"(?:reference|location|url)"\s*:\s*"(?:[^"]*/)?Patient/([A-Za-z0-9\-.]{1,64})'
                              rb'(?:/_history/[^"]*)?"')
_PATIENT_IN_PATH = re.compile(r"^/fhir/Patient/([A-Za-z0-9\-.]{1,64})(?:/|$)")
_PATIENT_IN_QUERY = re.compile(r"(?:^|[=,|&])Patient/([A-Za-z0-9\-.]{1,64})")
_BARE_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
#: Separators people type inside ID and phone numbers.
_SPACING = re.compile(r"[\s\-+()]")
#: Longest query kept in an AuditEvent.
MAX_QUERY = 2000
#: At most this many patients are listed per event.
MAX_PATIENTS = 1000

_ACTIONS = {"read": "R", "vread": "R", "history-instance": "R", "history-type": "R", "history-system": "R",
            "search-type": "E", "search-system": "E", "operation": "E", "transaction": "E", "batch": "E",
            "create": "C", "update": "U", "patch": "U", "delete": "D", "login": "E", "capabilities": "R"}


@dataclass
class AuditRecord:
    """One interaction to be audited (filled in by the API layer as the request runs)."""

    method: str
    path: str
    query: str
    source_ip: str
    client_id: str = "anonymous"
    status: int = 0
    patients: set[str] = field(default_factory=set)
    #: The resource a create/update wrote (``Type/id``), from the response's Location.
    written: str = ""
    recorded: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def interaction(self) -> str:
        """The FHIR restful interaction of the request (``read``, ``search-type``, ``create``…)."""
        return interaction_of(self.method, self.path)

    @property
    def action(self) -> str:
        """C, R, U, D or E."""
        return _ACTIONS.get(self.interaction, "E")

    @property
    def outcome(self) -> str:
        """``0`` success, ``4`` refused or invalid request, ``8`` server failure."""
        return "0" if self.status < 400 else "4" if self.status < 500 else "8"

    @property
    def resource_type(self) -> str:
        """The resource type the path names (empty at the system level)."""
        parts = self.path.split("/")
        return mask_text(parts[2]) if len(parts) > 2 and parts[2][:1].isupper() else ""

    @property
    def entity(self) -> str:
        """The object of the interaction: ``Type/id`` for instance interactions, else the type or path."""
        if self.written:
            return mask_text(self.written)
        parts = [p for p in self.path.split("/") if p]
        if len(parts) >= 3 and parts[1][:1].isupper() and not parts[2].startswith(("_", "$")):
            return mask_text(f"{parts[1]}/{parts[2]}")[:200]
        return mask_text(parts[1] if len(parts) > 1 else self.path)[:200]

    def add_patients_from(self, body: bytes) -> None:
        """Note the patients a request or response body (or the query) names."""
        if len(self.patients) >= MAX_PATIENTS or (b'Patient' not in body):
            return
        for match in _PATIENT_IN_BODY.finditer(body):
            self.patients.add((match.group(1) or match.group(2)).decode())
            if len(self.patients) >= MAX_PATIENTS:
                return

    def all_patients(self) -> set[str]:
        """Patients of the path, the query and the bodies (masked: an id is never a personal number)."""
        match = _PATIENT_IN_PATH.match(self.path)
        found = self.patients | ({match.group(1)} if match else set())
        found |= _patients_in_query(self.query)
        return {mask_text(p) for p in found}


def interaction_of(method: str, path: str) -> str:
    """The restful interaction of ``method`` on a hub path."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["auth", "token"]:
        return "login"
    rest = parts[1:] if parts[:1] == ["fhir"] else parts
    if not rest:
        return {"GET": "search-system", "POST": "transaction"}.get(method, "operation")
    if rest[0] == "metadata":
        return "capabilities"
    if rest[0] == "_history":
        return "history-system"
    if any(p.startswith("$") for p in rest):
        return "operation"
    if len(rest) == 1 or rest[1] == "_search":
        return {"GET": "search-type", "POST": "search-type" if len(rest) > 1 else "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "operation")
    if rest[1] == "_history":
        return "history-type"
    if len(rest) >= 3 and rest[2] == "_history":
        return "vread" if len(rest) == 4 else "history-instance"
    if len(rest) == 3:
        return "search-type"  # a compartment search
    return {"GET": "read", "HEAD": "read", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "operation")


def masked_query(query: str) -> str:
    """The query string with ID/phone numbers (however spaced) and personal-name values masked.

    A parameter is a name parameter when any segment of it is (``name``, ``subject:Patient.name``,
    ``_has:Observation:subject:…phone``). At most :data:`MAX_QUERY` characters are kept.
    """
    if not query:
        return ""
    pairs = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        segments = set(re.split(r"[.:]", name))
        if segments.intersection(_NAME_PARAMS):
            shown = mask_name(value)
        else:
            squeezed = _SPACING.sub("", value)
            shown = mask_text(squeezed) if mask_text(squeezed) != squeezed else mask_text(value)
        pairs.append((mask_text(name), shown))
    return urlencode(pairs, safe=",:|/*")[:MAX_QUERY]


def _patients_in_query(query: str) -> set[str]:
    """``Patient/x`` anywhere, and bare ids of ``patient``/``subject`` parameters."""
    found = {m.group(1) for m in _PATIENT_IN_QUERY.finditer(unquote(query))}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if re.split(r"[.:]", name)[-1] in ("patient", "subject"):
            found |= {v for v in value.split(",") if _BARE_ID.fullmatch(v)}
    return found


def audit_event(record: AuditRecord, server: str = "regional-health-hub") -> dict[str, Any]:
    """The ``AuditEvent`` resource of ``record``."""
    interaction = record.interaction
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{patient}"},
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for patient in sorted(record.all_patients())
    ]
    query = masked_query(record.query)
    if record.action == "E" and interaction != "login":
        entity: dict[str, Any] = {
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
            "description": mask_text(f"{record.method} {record.path}")[:500],
        }
        if query:
            entity["query"] = base64.b64encode(query.encode()).decode()
        entities.append(entity)
    elif "/" in record.entity:
        entities.append({
            "what": {"reference": record.entity},
            "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        })
    return {
        "resourceType": "AuditEvent",
        "id": record.event_id,
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "Restful Operation"}
        if interaction != "login" else {"system": _DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": _INTERACTION, "code": interaction}],
        "action": record.action,
        "recorded": format_instant(record.recorded),
        "outcome": record.outcome,
        "outcomeDesc": f"HTTP {record.status}",
        "agent": [
            {
                "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": {"identifier": {"system": "urn:hub:client", "value": record.client_id}},
                "requestor": True,
                "network": {"address": record.source_ip or "unknown", "type": "2"},
            },
            {
                "type": {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]},
                "who": {"display": server},
                "requestor": False,
            },
        ],
        "source": {
            "observer": {"display": server},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                      "display": "Application Server"}],
        },
        "entity": entities,
    }
