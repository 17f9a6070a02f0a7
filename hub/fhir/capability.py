"""The server's CapabilityStatement: only what actually works."""

from __future__ import annotations

from typing import Any

from hub.fhir.indexing import identifier_paths
from hub.fhir.instants import format_instant, now_utc
from hub.fhir.resource_types import resource_types

_TYPE_INTERACTIONS = [
    "read", "vread", "update", "patch", "delete",
    "history-instance", "history-type", "create", "search-type",
]


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    """A CapabilityStatement (R4, kind ``instance``) for the server at ``base_url``."""
    identified = identifier_paths()
    resources = []
    for resource_type in sorted(resource_types()):
        params = [{"name": "_id", "type": "token", "documentation": "Logical id (comma-separated for OR)"}]
        if resource_type in identified:
            params.append({"name": "identifier", "type": "token",
                           "documentation": "system|value, |value, system| or value"})
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
            "searchParam": params,
        })
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_utc()),
        "publisher": "Regional health-data hub",
        "kind": "instance",
        "software": {"name": "regional-health-hub", "version": software_version},
        "implementation": {"description": "Regional health-data hub FHIR R4 server", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "searchParam": [
                {"name": "_count", "type": "number", "documentation": "Page size"},
                {"name": "_offset", "type": "number", "documentation": "Index of the first result (paging)"},
            ],
        }],
    }
