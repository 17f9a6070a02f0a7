"""FHIR JSON rules the models do not enforce.

- No ``null``, ``[]`` or ``{}`` (R4 json.html); ``null`` is allowed only inside an array
  whose primitive-extension twin (``given`` / ``_given``) keeps the positions aligned.
- Narrative XHTML without active content (txt-1): no script, form, frame, object or
  event-handler attributes, no ``javascript:`` URLs.
- No unresolved references in a stored resource: ``urn:uuid:``/``urn:oid:`` and
  conditional (``Patient?identifier=…``) references are resolved by transactions only.
  A stored Bundle (a document) keeps its internal ``urn:uuid:`` references.
"""

from __future__ import annotations

import re
from typing import Any

from hub.errors import Issue
from hub.privacy import clip

_UNSAFE_TAG = re.compile(
    r"<\s*/?\s*(script|head|body|form|input|button|base|link|meta|style|frame|frameset|iframe|object|applet|embed)\b",
    re.IGNORECASE,
)
_EVENT_ATTRIBUTE = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE)
_SCRIPT_URL = re.compile(r"(href|src)\s*=\s*[\"']?\s*(javascript|vbscript|data):", re.IGNORECASE)
_CONDITIONAL_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+\?")


def check_json_rules(resource: dict[str, Any]) -> list[Issue]:
    """Issues for nulls, empty values, unsafe narrative and unresolved references."""
    issues: list[Issue] = []
    root_type = str(resource.get("resourceType", "Resource"))
    check_references = root_type != "Bundle"
    stack: list[tuple[dict[str, Any], str]] = [(resource, root_type)]
    while stack:
        node, path = stack.pop()
        for key, value in node.items():
            where = f"{path}.{key}"
            if value is None:
                issues.append(Issue("structure", f"{where} is null; omit elements that have no value", "error",
                                    (where,)))
            elif isinstance(value, dict):
                if not value:
                    issues.append(Issue("structure", f"{where} is an empty object", "error", (where,)))
                stack.append((value, where))
            elif isinstance(value, list):
                if not value:
                    issues.append(Issue("structure", f"{where} is an empty array", "error", (where,)))
                twin = key[1:] if key.startswith("_") else f"_{key}"
                for index, item in enumerate(value):
                    item_where = f"{where}[{index}]"
                    if item is None and twin not in node:
                        issues.append(Issue("structure", f"{item_where} is null", "error", (item_where,)))
                    elif isinstance(item, dict):
                        if not item:
                            issues.append(Issue("structure", f"{item_where} is an empty object", "error",
                                                (item_where,)))
                        stack.append((item, item_where))
            elif isinstance(value, str):
                if key == "div" and path.endswith(".text"):
                    _check_narrative(value, where, issues)
                elif key == "reference" and check_references:
                    _check_reference(value, where, issues)
    return issues


def _check_narrative(div: str, where: str, issues: list[Issue]) -> None:
    if not div.lstrip().startswith("<div"):
        issues.append(Issue("value", f"{where} must be an XHTML <div> element", "error", (where,)))
    if _UNSAFE_TAG.search(div) or _EVENT_ATTRIBUTE.search(div) or _SCRIPT_URL.search(div):
        issues.append(Issue(
            "value",
            f"{where} contains active or unsafe content (script, form, frame, object, event handlers "
            "or script URLs are not allowed in a narrative)",
            "error",
            (where,),
        ))


def _check_reference(reference: str, where: str, issues: list[Issue]) -> None:
    if reference.startswith(("urn:uuid:", "urn:oid:")) or _CONDITIONAL_REFERENCE.match(reference):
        issues.append(Issue(
            "invalid",
            f"{where} '{clip(reference, 80)}' is not resolved: urn:uuid and conditional references are only "
            "resolved inside a transaction Bundle",
            "error",
            (where,),
        ))
