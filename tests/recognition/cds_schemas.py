"""The JSON shapes of CDS Hooks (https://cds-hooks.hl7.org/2.0/: discovery, request, card response,
feedback), written as JSON Schemas from the specification's tables (required fields, types, enums)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

CODING = {"type": "object", "required": ["code"],
          "properties": {"system": {"type": "string"}, "code": {"type": "string"}, "display": {"type": "string"}}}

DISCOVERY: dict[str, Any] = {
    "type": "object", "required": ["services"],
    "properties": {"services": {"type": "array", "items": {
        "type": "object", "required": ["hook", "description", "id"],
        "properties": {"hook": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                       "id": {"type": "string", "pattern": "^[A-Za-z0-9._~-]+$"},
                       "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                       "usageRequirements": {"type": "string"}}}}},
}

REQUEST: dict[str, Any] = {
    "type": "object", "required": ["hook", "hookInstance", "context"],
    "properties": {
        "hook": {"type": "string"}, "hookInstance": {"type": "string"}, "fhirServer": {"type": "string"},
        "context": {"type": "object", "required": ["userId", "patientId", "draftOrders"],
                    "properties": {"userId": {"type": "string"}, "patientId": {"type": "string"},
                                   "encounterId": {"type": "string"},
                                   "selections": {"type": "array", "items": {"type": "string"}},
                                   "draftOrders": {"type": "object", "required": ["resourceType"],
                                                   "properties": {"resourceType": {"const": "Bundle"}}}}},
        "prefetch": {"type": "object"},
    },
}

ACTION = {"type": "object", "required": ["type", "description"],
          "properties": {"type": {"enum": ["create", "update", "delete"]}, "description": {"type": "string"},
                         "resource": {"type": "object"},
                         "resourceId": {"type": "array", "items": {"type": "string"}}}}

CARD: dict[str, Any] = {
    "type": "object", "required": ["summary", "indicator", "source"],
    "properties": {
        "uuid": {"type": "string"}, "summary": {"type": "string", "maxLength": 140}, "detail": {"type": "string"},
        "indicator": {"enum": ["info", "warning", "critical"]},
        "source": {"type": "object", "required": ["label"],
                   "properties": {"label": {"type": "string"}, "url": {"type": "string"}, "icon": {"type": "string"},
                                  "topic": CODING}},
        "suggestions": {"type": "array", "items": {
            "type": "object", "required": ["label"],
            "properties": {"label": {"type": "string"}, "uuid": {"type": "string"},
                           "isRecommended": {"type": "boolean"}, "actions": {"type": "array", "items": ACTION}}}},
        "selectionBehavior": {"enum": ["at-most-one", "any"]},
        "overrideReasons": {"type": "array", "items": CODING},
        "links": {"type": "array", "items": {
            "type": "object", "required": ["label", "url", "type"],
            "properties": {"label": {"type": "string"}, "url": {"type": "string"},
                           "type": {"enum": ["absolute", "smart"]}, "appContext": {"type": "string"}}}},
    },
    # selectionBehavior is required when there are suggestions
    "dependentRequired": {"suggestions": ["selectionBehavior"]},
}

RESPONSE: dict[str, Any] = {
    "type": "object", "required": ["cards"],
    "properties": {"cards": {"type": "array", "items": CARD}, "systemActions": {"type": "array", "items": ACTION}},
}

FEEDBACK: dict[str, Any] = {
    "type": "object", "required": ["feedback"],
    "properties": {"feedback": {"type": "array", "items": {
        "type": "object", "required": ["card", "outcome", "outcomeTimestamp"],
        "properties": {"card": {"type": "string"}, "outcome": {"enum": ["accepted", "overridden"]},
                       "acceptedSuggestions": {"type": "array", "items": {"type": "object", "required": ["id"]}},
                       "overrideReason": {"type": "object", "properties": {"reason": CODING,
                                                                           "userComment": {"type": "string"}}},
                       "outcomeTimestamp": {"type": "string"}}}}},
}


def validate(document: Any, schema: dict[str, Any]) -> None:
    """Raise if ``document`` does not have the shape."""
    Draft202012Validator(schema).validate(document)
