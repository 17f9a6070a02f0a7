"""OperationOutcome builders."""

from __future__ import annotations

from typing import Any

from hub.errors import HubError, Issue
from hub.privacy import mask_text


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource (as a dict) holding ``issues``."""
    out = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": mask_text(issue.diagnostics),
        }
        if issue.expression:
            entry["expression"] = list(issue.expression)
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}


def from_error(error: HubError) -> dict[str, Any]:
    """The OperationOutcome of a HubError."""
    return operation_outcome(error.issues)


def information(message: str) -> dict[str, Any]:
    """An OperationOutcome with one information-level issue."""
    return operation_outcome([Issue("informational", message, "information")])
