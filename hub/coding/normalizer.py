"""Normalization of one source's resources: local codings gain standard codings, units are converted.

Built per source from the mapping tables in force (:class:`MappingIndex`); the hot path is
one dict lookup per local coding. What the tables cannot answer becomes a
:class:`Finding` (unmapped code, ambiguous mapping, display drift, unit not convertible),
which the governance review turns into conflicts. Normalizing is idempotent: codings
and conversions the hub added before are removed first, so a stored resource can be
normalized again under newer tables.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hub.coding.mapping_tables import split_local
from hub.coding.text import fold
from hub.coding.units import UCUM, Unit, Units

#: Marks a coding the hub added; its value is the mapping table (``url|version``) it came from.
MAPPED_EXTENSION = "urn:hub:extension:mapped-by"
#: On a converted Quantity: the value as the source reported it.
ORIGINAL_EXTENSION = "urn:hub:extension:original-quantity"
MAPPING_TAG = "urn:hub:mapping-version"
ETHNICITY_EXTENSION = "urn:hub:extension:ethnicity"
#: The codes a source gives that are already codes of the element's standard.
DIRECT = "urn:hub:mapping:direct"
ICD10_CN = "urn:oid:2.16.156.10011.2.3.3.11"
LOINC = "http://loinc.org"
MARITAL = "urn:oid:2.16.156.10011.2.3.3.5"
ETHNICITY = "urn:oid:2.16.156.10011.2.3.3.3"


@dataclass(frozen=True)
class ElementSpec:
    """A kind of local code: its standard, and where resources carrying it are found."""

    target_system: str | None
    resource_types: tuple[str, ...]
    #: A token search parameter on the local coding (None: scan the source's resources of the types).
    search_param: str | None


ELEMENTS: dict[str, ElementSpec] = {
    "diagnosis": ElementSpec(ICD10_CN, ("Condition",), "code"),
    "lab-item": ElementSpec(LOINC, ("Observation",), "code"),
    "lab-panel": ElementSpec(LOINC, ("DiagnosticReport",), "code"),
    "marital-status": ElementSpec(MARITAL, ("Patient",), None),
    "ethnicity": ElementSpec(ETHNICITY, ("Patient",), None),
    "exam-item": ElementSpec(None, ("DiagnosticReport",), "code"),
    "drug": ElementSpec(None, ("MedicationRequest",), "code"),
    "department": ElementSpec(None, ("Encounter",), None),
}


@dataclass(frozen=True)
class Target:
    """What a local code maps to, prepared for the hot path."""

    coding: dict[str, Any] | None
    equivalence: str
    #: The source display the table was written for (folded), to notice drift.
    source_display: str = ""
    unit: Unit | None = None
    molar_mass: Decimal | None = None
    ambiguous: tuple[str, ...] = ()
    #: For an ambiguous code: the local system of the table holding the rows (the conflict is the table's).
    table_system: str = ""


@dataclass
class Finding:
    """Something the tables could not answer, counted over a batch."""

    kind: str
    system: str
    code: str
    detail: str
    display: str
    count: int = 0
    samples: list[str] = field(default_factory=list)


class MappingIndex:
    """The targets of one source's local codes, keyed by (element or system, code)."""

    def __init__(self, version: str, targets: dict[tuple[str, str], Target],
                 direct: dict[str, Any] | None = None, units: Units | None = None) -> None:
        self.version = version
        self.targets = targets
        #: element → the standard's CodeSystemIndex, for codes that are already standard codes.
        self.direct = direct or {}
        self.units = units


def display_key(display: str) -> str:
    """The key of a drifted display (a hash: the text itself is stored masked, never as a key)."""
    return "display:" + hashlib.sha256(fold(display).encode()).hexdigest()[:24]


def _key(system: str) -> tuple[str, str | None]:
    local = split_local(system)
    return (local[1], local[1]) if local else (system, None)


def _sample(resource: dict[str, Any], coding: dict[str, Any]) -> str:
    quantity = resource.get("valueQuantity")
    if isinstance(quantity, dict):
        return f"{quantity.get('value')} {quantity.get('unit', '')}".strip()
    if "valueString" in resource:
        return str(resource["valueString"])[:60]
    return str(coding.get("display") or "")[:60]


class MappingNormalizer:
    """Normalizes the resources of one source (a :class:`hub.ingest.mapping.Normalizer`)."""

    def __init__(self, index: MappingIndex) -> None:
        self.index = index
        self.version = index.version
        self.findings: dict[tuple[str, str, str, str], Finding] = {}

    def drain(self) -> list[Finding]:
        """The findings since the last drain."""
        found, self.findings = list(self.findings.values()), {}
        return found

    def _find(self, kind: str, system: str, code: str, detail: str, display: str, sample: str) -> None:
        finding = self.findings.get((kind, system, code, detail))
        if finding is None:
            finding = self.findings[(kind, system, code, detail)] = Finding(kind, system, code, detail, display)
        finding.count += 1
        if sample and len(finding.samples) < 5 and sample not in finding.samples:
            finding.samples.append(sample)

    def normalize(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` (changed in place) with standard codings added next to its local ones."""
        if resource.get("resourceType") == "Observation":
            _restore_quantities(resource)
        elif resource.get("resourceType") == "Patient":
            _upgrade_ethnicity(resource)
        for concept, is_code in _concepts(resource):
            codings = concept.get("coding")
            if not isinstance(codings, list):
                continue
            kept = [c for c in codings if not _hub_added(c)]
            added = []
            for coding in kept:
                system, code = coding.get("system"), coding.get("code")
                if isinstance(system, str) and isinstance(code, str):
                    target = self._target(resource, coding, system, code)
                    if target is not None and target.coding is not None:
                        added.append(copy.deepcopy(target.coding))
                        if is_code and target.unit is not None:
                            self._convert(resource, coding, target)
            concept["coding"] = kept + [a for a in added if not any(
                a.get("system") == k.get("system") and a.get("code") == k.get("code") for k in kept)]
        _tag(resource, self.version)
        return resource

    def _target(self, resource: dict[str, Any], coding: dict[str, Any], system: str, code: str) -> Target | None:
        key, element = _key(system)
        target = self.index.targets.get((key, code))
        if target is None:
            if element is None:
                return None
            target = self._direct(element, code)
            spec = ELEMENTS.get(element)
            if target is None and spec is not None and spec.target_system:
                self._find("unmapped", system, code, "", coding.get("display") or "", _sample(resource, coding))
            return target
        if target.ambiguous:
            self._find("ambiguous", target.table_system or system, code, "", coding.get("display") or "",
                       _sample(resource, coding))
            return None
        display = coding.get("display")
        if isinstance(display, str) and target.source_display and fold(display) != target.source_display:
            self._find("display-drift", system, code, display_key(display), display, _sample(resource, coding))
        return target

    def _direct(self, element: str, code: str) -> Target | None:
        """A local code that is already a code of the element's standard (ICD-10 in a HIS, GB/T codes)."""
        standard = self.index.direct.get(element)
        concept = standard.get(code) if standard is not None else None
        if concept is None or concept.inactive:
            return None
        coding = {"extension": [{"url": MAPPED_EXTENSION, "valueUri": DIRECT}], "system": standard.url,
                  "code": concept.code}
        if concept.display:
            coding["display"] = concept.display
        return Target(coding, "equal")

    def _convert(self, resource: dict[str, Any], coding: dict[str, Any], target: Target) -> None:
        quantity = resource.get("valueQuantity")
        if not isinstance(quantity, dict) or self.index.units is None or target.unit is None:
            return
        source = self.index.units.resolve(quantity.get("unit"))
        value = quantity.get("value")
        if source is None or not isinstance(value, (Decimal, int, float)):
            self._find("unit", coding["system"], coding["code"], str(quantity.get("unit") or ""),
                       coding.get("display") or "", _sample(resource, coding))
            return
        ranges = resource.get("referenceRange") or []
        converted = self.index.units.convert(Decimal(str(value)), source, target.unit, target.molar_mass)
        if converted is None:
            self._find("unit", coding["system"], coding["code"], source.code, coding.get("display") or "",
                       _sample(resource, coding))
            return
        resource["valueQuantity"] = _converted(quantity, converted, target.unit)
        for entry in ranges:
            for bound in ("low", "high"):
                limit = entry.get(bound)
                if isinstance(limit, dict) and isinstance(limit.get("value"), (Decimal, int, float)):
                    value_in = self.index.units.convert(Decimal(str(limit["value"])), source, target.unit,
                                                        target.molar_mass)
                    if value_in is not None:
                        entry[bound] = _converted(limit, value_in, target.unit)


def _converted(original: dict[str, Any], value: Decimal, unit: Unit) -> dict[str, Any]:
    if original.get("code") == unit.code and original.get("system") == UCUM and original.get("value") == value:
        return original
    kept = {k: v for k, v in original.items() if k != "extension"}
    out: dict[str, Any] = {"extension": [{"url": ORIGINAL_EXTENSION, "valueQuantity": kept}], "value": value}
    if "comparator" in original:
        out["comparator"] = original["comparator"]
    out.update({"unit": unit.display, "system": UCUM, "code": unit.code})
    return out


def _restore_quantities(resource: dict[str, Any]) -> None:
    """Undo an earlier conversion (the original quantity is kept in an extension)."""
    def original(quantity: Any) -> Any:
        if isinstance(quantity, dict):
            for extension in quantity.get("extension") or []:
                if extension.get("url") == ORIGINAL_EXTENSION:
                    return extension["valueQuantity"]
        return quantity

    if "valueQuantity" in resource:
        resource["valueQuantity"] = original(resource["valueQuantity"])
    for entry in resource.get("referenceRange") or []:
        for bound in ("low", "high"):
            if bound in entry:
                entry[bound] = original(entry[bound])


def _upgrade_ethnicity(resource: dict[str, Any]) -> None:
    """Patients stored before codings could be added keep the local ethnicity as a bare Coding: wrap it."""
    for extension in resource.get("extension") or []:
        if (isinstance(extension, dict) and extension.get("url") == ETHNICITY_EXTENSION
                and isinstance(extension.get("valueCoding"), dict)):
            extension["valueCodeableConcept"] = {"coding": [extension.pop("valueCoding")]}


def _hub_added(coding: Any) -> bool:
    return isinstance(coding, dict) and any(e.get("url") == MAPPED_EXTENSION for e in coding.get("extension") or [])


def _concepts(resource: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """The top-level CodeableConcepts (and those in top-level extensions); True for ``code``."""
    found: list[tuple[dict[str, Any], bool]] = []
    for name, value in resource.items():
        if name in ("meta", "category", "class", "clinicalStatus", "verificationStatus", "identifier"):
            continue
        if isinstance(value, dict) and "coding" in value:
            found.append((value, name == "code"))
        elif isinstance(value, list):
            if name == "extension":
                found.extend((e["valueCodeableConcept"], False) for e in value
                             if isinstance(e, dict) and isinstance(e.get("valueCodeableConcept"), dict))
            else:
                found.extend((v, False) for v in value if isinstance(v, dict) and "coding" in v)
    return found


def _tag(resource: dict[str, Any], version: str) -> None:
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return
    tags = [t for t in meta.get("tag") or [] if t.get("system") != MAPPING_TAG]
    tags.append({"system": MAPPING_TAG, "code": version})
    meta["tag"] = tags
