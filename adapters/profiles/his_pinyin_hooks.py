"""Quirks of the pinyin-style HIS that a value map cannot express."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def patient(values: dict[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Names padded with full-width spaces, ID numbers with a lower-case check 'x', phones with dashes."""
    if isinstance(values.get("name"), str):
        values["name"] = values["name"].replace("\u3000", "").strip()
    if isinstance(values.get("id_number"), str):
        values["id_number"] = values["id_number"].strip().upper()
    if isinstance(values.get("phone"), str):
        values["phone"] = values["phone"].replace("-", "").replace(" ", "")
    return values


HOOKS = {"Patient": patient}
