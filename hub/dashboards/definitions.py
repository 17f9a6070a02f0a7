"""The indicators as FHIR ``Measure`` resources (``measures.json``, data in the repository).

Each Measure group is one figure; its extensions say how it scores (``proportion``, ``ratio``, ``count`` or
``continuous``), its unit and its target; its stratifiers how it breaks down. The evaluators in
:mod:`hub.dashboards.indicators` compute exactly the groups the Measures define (a test keeps both equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

INDICATOR_SYSTEM = "urn:hub:indicator"
STRATIFIER_SYSTEM = "urn:hub:stratifier"
SCORING_URL = "urn:hub:indicator-scoring"
UNIT_URL = "urn:hub:indicator-unit"
TARGET_URL = "urn:hub:indicator-target"
SCORINGS = ("proportion", "ratio", "count", "continuous")


@dataclass(frozen=True)
class GroupDef:
    """One figure of an indicator."""

    code: str
    name: str
    scoring: str
    unit: str
    target: float | None
    stratifiers: tuple[str, ...]


@dataclass(frozen=True)
class MeasureDef:
    """One indicator: the Measure and its figures."""

    measure_id: str
    url: str
    title: str
    groups: tuple[GroupDef, ...]
    resource: dict[str, Any]

    def group(self, code: str) -> GroupDef:
        """The figure ``code``."""
        return next(g for g in self.groups if g.code == code)


def _extension(element: dict[str, Any], url: str) -> Any:
    for extension in element.get("extension") or ():
        if extension.get("url") == url:
            return next((v for k, v in extension.items() if k.startswith("value")), None)
    return None


def _group(element: dict[str, Any]) -> GroupDef:
    coding = next(c for c in element["code"]["coding"] if c["system"] == INDICATOR_SYSTEM)
    scoring = _extension(element, SCORING_URL)
    if scoring not in SCORINGS:
        raise ValueError(f"group {coding['code']}: scoring {scoring!r} is not one of {SCORINGS}")
    target = _extension(element, TARGET_URL)
    stratifiers = tuple(c["code"] for s in element.get("stratifier") or () for c in s["code"]["coding"]
                        if c["system"] == STRATIFIER_SYSTEM)
    return GroupDef(coding["code"], element["code"].get("text") or coding.get("display") or coding["code"], scoring,
                    _extension(element, UNIT_URL) or "", float(target) if target is not None else None, stratifiers)


@lru_cache(maxsize=1)
def measures() -> dict[str, MeasureDef]:
    """Every indicator by Measure id, in the order of ``measures.json``."""
    bundle = orjson.loads((resources.files("hub.dashboards") / "measures.json").read_bytes())
    out: dict[str, MeasureDef] = {}
    for entry in bundle["entry"]:
        measure = entry["resource"]
        out[measure["id"]] = MeasureDef(measure["id"], measure["url"], measure["title"],
                                        tuple(_group(g) for g in measure["group"]), measure)
    return out
