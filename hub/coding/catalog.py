"""The terminology shipped with the hub (``terminology/``): YAML catalog + CSV concepts → FHIR resources.

``terminology/catalog.yaml`` names each CodeSystem (canonical URL, title, version, CSV
file, which CSV columns become concept properties), each ValueSet (its ``compose``) and
each ConceptMap (its groups). :func:`catalog_resources` turns them into CodeSystem,
ValueSet and ConceptMap resources with fixed ids, so loading twice changes nothing.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from hub.coding.codesystems import PAD_EXTENSION
from hub.errors import InvalidRequest

#: The directory of the shipped terminology: ``$HUB_TERMINOLOGY_DIR``, else the repository's ``terminology/``
#: (its sibling ``mappings/`` holds the shipped mapping tables).
DEFAULT_DIR = Path(os.environ.get("HUB_TERMINOLOGY_DIR") or Path(__file__).resolve().parents[2] / "terminology")
PUBLISHER = "区域医疗健康数据中心"
PARENT_PROPERTY = {"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"}
STATUS_PROPERTY = {"code": "status", "uri": "http://hl7.org/fhir/concept-properties#status", "type": "code"}
ALIAS_USE = {"system": "urn:hub:designation-use", "code": "alias", "display": "别名"}


@dataclass(frozen=True)
class CatalogResource:
    """One resource of the catalog."""

    resource_type: str
    resource_id: str
    resource: dict[str, Any]


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(handle)]
    except FileNotFoundError:
        raise InvalidRequest(f"Terminology file {path.name} is missing") from None


def _typed(kind: str, text: str, where: str) -> dict[str, Any]:
    if kind == "decimal":
        try:
            return {"valueDecimal": Decimal(text)}
        except InvalidOperation:
            raise InvalidRequest(f"{where}: '{text}' is not a number") from None
    if kind == "string":
        return {"valueString": text}
    return {"valueCode": text}


def _concepts(entry: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    columns: dict[str, dict[str, Any]] = entry.get("properties") or {}
    concepts = []
    seen: set[str] = set()
    for number, row in enumerate(_rows(directory / entry["file"]), start=2):
        code = row.get("code", "")
        where = f"{entry['file']} line {number}"
        if not code or code in seen:
            raise InvalidRequest(f"{where}: {'duplicate' if code else 'missing'} code {code}")
        seen.add(code)
        concept: dict[str, Any] = {"code": code}
        if row.get("display"):
            concept["display"] = row["display"]
        if row.get("display_en"):
            concept["designation"] = [{"language": "en", "value": row["display_en"]}]
        properties = []
        if row.get("parent"):
            properties.extend({"code": "parent", "valueCode": p} for p in row["parent"].split("|"))
        if row.get("status"):
            properties.append({"code": "status", "valueCode": row["status"]})
        for column, spec in columns.items():
            for value in filter(None, (row.get(column) or "").split("|") if spec.get("multiple") else
                                [row.get(column) or ""]):
                properties.append({"code": spec["code"], **_typed(spec.get("type", "code"), value, where)})
        if properties:
            concept["property"] = properties
        concepts.append(concept)
    aliases = entry.get("aliases")
    if aliases:
        by_code = {c["code"]: c for c in concepts}
        for row in _rows(directory / aliases):
            target = by_code.get(row.get("code", ""))
            if target is None:
                raise InvalidRequest(f"{aliases}: alias '{row.get('alias')}' names an unknown code {row.get('code')}")
            target.setdefault("designation", []).append({"use": ALIAS_USE, "value": row["alias"]})
    return concepts


def _code_system(entry: dict[str, Any], directory: Path) -> dict[str, Any]:
    concepts = _concepts(entry, directory)
    properties = [PARENT_PROPERTY, STATUS_PROPERTY]
    properties += [{"code": spec["code"], "type": spec.get("type", "code"),
                    **({"description": spec["description"]} if spec.get("description") else {})}
                   for spec in (entry.get("properties") or {}).values()]
    resource: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": entry["id"],
        "url": entry["url"],
        "version": str(entry["version"]),
        "name": entry["name"],
        "title": entry["title"],
        "status": "active",
        "experimental": False,
        "publisher": entry.get("publisher", PUBLISHER),
        "description": entry.get("description", entry["title"]),
        "caseSensitive": True,
        "valueSet": f"urn:hub:valueset:{entry['id']}",
        "hierarchyMeaning": "is-a",
        "content": entry.get("content", "fragment"),
        "count": len(concepts),
        "property": properties,
        "concept": concepts,
    }
    if entry.get("identifier"):
        resource["identifier"] = [{"value": entry["identifier"]}]
    if entry.get("pad"):
        resource["extension"] = [{"url": PAD_EXTENSION, "valueInteger": int(entry["pad"])}]
    if entry.get("copyright"):
        resource["copyright"] = entry["copyright"]
    return resource


def _all_codes(code_system: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet", "id": code_system["id"], "url": code_system["valueSet"],
        "version": code_system["version"], "name": f"{code_system['name']}All",
        "title": f"{code_system['title']}（全部代码）", "status": "active", "publisher": code_system["publisher"],
        "compose": {"include": [{"system": code_system["url"]}]},
    }


def _value_set(entry: dict[str, Any], version: str) -> dict[str, Any]:
    return {
        "resourceType": "ValueSet", "id": entry["id"], "url": f"urn:hub:valueset:{entry['id']}",
        "version": version, "name": entry["name"], "title": entry["title"], "status": "active",
        "publisher": entry.get("publisher", PUBLISHER), "description": entry.get("description", entry["title"]),
        "compose": entry["compose"],
    }


def _concept_map(entry: dict[str, Any], version: str) -> dict[str, Any]:
    groups = []
    for group in entry["groups"]:
        elements = []
        for code, targets in group["elements"].items():
            elements.append({"code": str(code), "target": [
                {"code": str(t["code"]), "equivalence": t["equivalence"],
                 **({"display": t["display"]} if t.get("display") else {})} for t in targets]})
        groups.append({"source": group["source"], "target": group["target"], "element": elements})
    return {
        "resourceType": "ConceptMap", "id": entry["id"], "url": f"urn:hub:conceptmap:{entry['id']}",
        "version": version, "name": entry["name"], "title": entry["title"], "status": "active",
        "publisher": entry.get("publisher", PUBLISHER), "sourceUri": entry.get("sourceUri"),
        "targetUri": entry.get("targetUri"), "group": groups,
    }


def catalog_resources(directory: Path = DEFAULT_DIR) -> list[CatalogResource]:
    """Every resource of the catalog in ``directory`` (code systems first)."""
    try:
        catalog = yaml.safe_load((directory / "catalog.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidRequest(f"No catalog.yaml in {directory}") from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"catalog.yaml is not valid YAML: {type(exc).__name__}") from None
    version = str(catalog.get("version", "1"))
    out: list[CatalogResource] = []
    for entry in catalog.get("codesystems") or []:
        code_system = _code_system(entry, directory)
        out.append(CatalogResource("CodeSystem", code_system["id"], code_system))
        out.append(CatalogResource("ValueSet", code_system["id"], _all_codes(code_system)))
    for entry in catalog.get("valuesets") or []:
        out.append(CatalogResource("ValueSet", entry["id"], _compact(_value_set(entry, version))))
    for entry in catalog.get("conceptmaps") or []:
        out.append(CatalogResource("ConceptMap", entry["id"], _compact(_concept_map(entry, version))))
    return out


def _compact(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if v is not None}
