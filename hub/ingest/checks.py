"""The hub's own checks of canonical records and built resources (reasons for quarantine)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from adapters.base import CanonicalRecord, PatientRecord
from hub.errors import HubError
from hub.fhir.validation import validate_resource
from hub.privacy import TOKEN_PREFIX
from hub.privacy.citizen_id import citizen_id_problem

#: JSON escapes of characters FHIR strings forbid (C0 controls other than tab, CR, LF).
_CONTROL_ESCAPE = re.compile(rb"\\u00(?:0[0-8bcefBCEF]|1[0-9a-fA-F])|\\b|\\f")
_TOKEN = TOKEN_PREFIX.encode()


def record_problem(record: CanonicalRecord) -> str | None:
    """Why a record may not be stored as it is (None: it may)."""
    if isinstance(record, PatientRecord) and record.id_number:
        problem = citizen_id_problem(record.id_number)
        if problem:
            return f"id_number: {problem}"
    return None


def content_problem(content: bytes) -> str | None:
    """Why serialized resource JSON may not be stored (control characters, the hub's reserved prefix)."""
    if _CONTROL_ESCAPE.search(content):
        return "a text value holds a control character, which FHIR strings do not allow"
    if _TOKEN in content:
        return f"a value starts with '{TOKEN_PREFIX}', which is reserved for the hub's encrypted data"
    return None


class Sampler:
    """Validates the first resource of each type and then one in ``every`` against the FHIR models."""

    def __init__(self, every: int = 1000, validate: Callable[[dict[str, Any]], Any] = validate_resource) -> None:
        self.every = max(1, every)
        self._validate = validate
        self._seen: dict[str, int] = {}
        self.validated = 0

    def problem(self, resource: dict[str, Any]) -> str | None:
        """The validation failure of a sampled resource (None when valid or not sampled)."""
        resource_type = resource["resourceType"]
        seen = self._seen.get(resource_type, 0)
        self._seen[resource_type] = seen + 1
        if seen % self.every:
            return None
        self.validated += 1
        try:
            self._validate(resource)
        except HubError as error:
            return f"the {resource_type} built from it is not valid FHIR: {error.message}"
        return None
