"""Validation of incoming resources: R4B structure plus required bindings.

The hub stores exactly the JSON it validated (never a pydantic re-serialization):
:func:`validate_resource` checks the dict and returns nothing new.
"""

from __future__ import annotations

import re
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from hub.errors import InvalidRequest, Issue, ResourceInvalid
from hub.fhir.bindings import check_required_bindings
from hub.fhir.json_rules import check_json_rules
from hub.fhir.resource_types import resource_types
from hub.privacy import clip

_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9]*$")
_ERROR_CODES = {"missing": "required", "extra_forbidden": "structure"}


def validate_resource(data: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Validate ``data`` as a FHIR R4 resource and return it unchanged.

    Raises InvalidRequest when it is not a resource of a known type (or not of
    ``expected_type``), ResourceInvalid naming each failing element otherwise.
    """
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object holding a FHIR resource")
    resource_type = data.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidRequest("The resource has no resourceType", expression="resourceType")
    if resource_type not in resource_types():
        raise InvalidRequest(f"Unknown or unsupported resourceType '{clip(resource_type, 64)}'", expression="resourceType")
    if expected_type is not None and resource_type != expected_type:
        raise InvalidRequest(
            f"Resource type '{resource_type}' does not match the URL's type '{expected_type}'",
            expression="resourceType",
        )
    issues = check_json_rules(data)
    if issues:
        raise ResourceInvalid(_first_of(issues), issues=issues)
    model = get_fhir_model_class(resource_type)
    try:
        model.model_validate(data)
        issues = check_required_bindings(data)
    except ValidationError as exc:
        issues = _issues(resource_type, exc)
    except RecursionError:
        raise ResourceInvalid(f"{resource_type} is nested too deeply", expression=resource_type) from None
    except (ValueError, TypeError, KeyError) as exc:  # validators of fhir_core raise plain errors
        raise ResourceInvalid(f"{resource_type} is invalid: {clip(str(exc), 300)}", expression=resource_type) from None
    if issues:
        raise ResourceInvalid(_first_of(issues), issues=issues)
    return data


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    path = resource_type
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and _NAME.match(part):
            path += f".{part}"
    return path


def _issues(resource_type: str, exc: ValidationError) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[tuple[str, str]] = set()
    for error in exc.errors(include_url=False, include_input=False):
        path = _path(resource_type, tuple(error.get("loc", ())))
        kind = error.get("type", "")
        if kind == "extra_forbidden":
            message = f"Unknown element '{path}'"
        elif kind == "missing":
            message = f"Required element '{path}' is missing"
        else:
            message = f"{path}: {error.get('msg', 'invalid value')}"
        if (path, message) in seen:
            continue
        seen.add((path, message))
        issues.append(Issue(_ERROR_CODES.get(kind, "value"), message, "error", (path,)))
    return issues or [Issue("structure", f"{resource_type} is invalid", "error", (resource_type,))]


def _first_of(issues: list[Issue]) -> str:
    first = issues[0].diagnostics
    more = len(issues) - 1
    return first if more == 0 else f"{first} (and {more} more issue{'s' if more > 1 else ''})"
