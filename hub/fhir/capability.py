"""The server's CapabilityStatement: only what actually works."""

from __future__ import annotations

from typing import Any

from hub.fhir.instants import format_instant, now_utc
from hub.fhir.resource_types import resource_types
from hub.fhir.search_params import SearchRegistry

#: The canonical base of the FHIR Bulk Data Access IG.
_BULK = "http://hl7.org/fhir/uv/bulkdata"

_TYPE_INTERACTIONS = [
    "read", "vread", "update", "patch", "delete",
    "history-instance", "history-type", "create", "search-type",
]


def _search_params(registry: SearchRegistry, resource_type: str) -> list[dict[str, str]]:
    params = []
    for code, param in sorted(registry.for_type(resource_type).items()):
        if param.searchable:
            entry = {"name": code, "type": param.type}
            if param.url:
                entry["definition"] = param.url
            params.append(entry)
    return params


#: The type-level operations of the terminology resources (HL7's R4 OperationDefinitions).
TERMINOLOGY_OPERATIONS = {
    "CodeSystem": ("lookup", "validate-code", "subsumes"),
    "ValueSet": ("expand", "validate-code"),
    "ConceptMap": ("translate",),
}


def capability_statement(
    base_url: str, software_version: str, registry: SearchRegistry, token_url: str = ""
) -> dict[str, Any]:
    """A CapabilityStatement (R4, kind ``instance``) for the server at ``base_url``."""
    resources = []
    for resource_type in sorted(resource_types()):
        params = _search_params(registry, resource_type)
        resources.append({
            "type": resource_type,
            "interaction": [{"code": code} for code in _TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            "referencePolicy": ["literal"],
            "searchInclude": ["*"] + sorted(f"{resource_type}:{p['name']}" for p in params
                                              if p["type"] == "reference"),
            "searchRevInclude": ["*"],
            "searchParam": params,
        })
        if resource_type in TERMINOLOGY_OPERATIONS:
            resources[-1]["operation"] = [
                {"name": name, "definition": f"http://hl7.org/fhir/OperationDefinition/{resource_type}-{name}"}
                for name in TERMINOLOGY_OPERATIONS[resource_type]]
        if resource_type == "Patient":
            resources[-1]["operation"] = [
                {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
                 "documentation": "Regional persons (golden Patients) a Patient may be, graded and scored"},
                {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                 "documentation": "On a golden Patient: every linked source Patient and their data"},
                {"name": "export", "definition": f"{_BULK}/OperationDefinition/patient-export",
                 "documentation": "Bulk Data export of every patient's data (Prefer: respond-async)"}]
        if resource_type == "Group":
            resources[-1]["operation"] = [
                {"name": "export", "definition": f"{_BULK}/OperationDefinition/group-export",
                 "documentation": "Bulk Data export of the Group's patients' data: member Patients, or the patients "
                                  "of the institution a characteristic urn:hub:group|institution names"}]
        if resource_type == "Subscription":
            resources[-1]["documentation"] = (
                "R4 rest-hook Subscriptions: criteria is a search (Type?params); no payload POSTs an empty "
                "notification naming the resource in X-Hub-Resource, payload application/fhir+json PUTs the resource "
                "to [endpoint]/[type]/[id]; retried with backoff, status error after the last attempt")
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_utc()),
        "publisher": "Regional health-data hub",
        "kind": "instance",
        "instantiates": [f"{_BULK}/CapabilityStatement/bulk-data"],
        "software": {"name": "regional-health-hub", "version": software_version},
        "implementation": {"description": "Regional health-data hub FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}],
                "description": "OAuth2 client credentials (SMART Backend Services): client_secret_basic or "
                               "private_key_jwt; scopes system/<Type>.read|write or system/<Type>.cruds",
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}],
                }] if token_url else [],
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"},
                            {"code": "search-system"}],
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "Page size"},
                {"name": "_sort", "type": "special", "documentation": "Sort keys, '-' for descending"},
                {"name": "_total", "type": "special", "documentation": "accurate, estimate or none"},
                {"name": "_summary", "type": "special", "documentation": "true, text, data, count"},
                {"name": "_elements", "type": "special", "documentation": "Top-level elements to return"},
            ],
            "operation": [{"name": "everything",
                           "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                          {"name": "export", "definition": f"{_BULK}/OperationDefinition/export",
                           "documentation": "Bulk Data export of every resource the client may read "
                                            "(Prefer: respond-async; _type, _since, _typeFilter, _elements)"}],
        }],
    }
