"""Vendor profiles: the declarative description of a relational source (YAML).

A profile says, per record kind, which SQL reads it, which column is its key and which
its update time (the watermark), and how columns map to canonical fields — a column
name, or ``{column, map, default}`` for value maps (text '男'/'女' → GB/T 2261.1 codes,
local marital codes), or ``{value}`` for a constant. Child rows (the results of a lab
report) have their own query with ``{parents}`` where the page's report keys go.
Quirks that a map cannot express go into a small hooks module named by ``hooks``.
See ``adapters/README.md`` for the format.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.base import RECORD_KINDS, LabResultRecord, RecordProblem
from adapters.fields import RECORD_TYPES, _field_types, is_null
from adapters.files import configured_dirs, inside

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_CHILD_FIELDS = {"results": "LabResult"}
#: A hook takes the canonical values (and the raw row) and returns them changed.
Hook = Callable[[dict[str, Any], Mapping[str, Any]], dict[str, Any]]


class ProfileError(ValueError):
    """A profile file is not valid (raised when it is loaded, naming the place)."""


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical field is read from a row."""

    column: str | None = None
    mapping: Mapping[str, Any] | None = None
    default: Any = None
    value: Any = None

    def read(self, raw: Mapping[str, Any], name: str) -> Any:
        """The field's value from a raw row (lower-case column names)."""
        if self.column is None:
            return self.value
        found = raw.get(self.column)
        if is_null(found):
            return self.default
        if self.mapping is not None:
            text = str(found).strip()
            if isinstance(found, float) and found.is_integer():
                text = str(int(found))
            if text not in self.mapping:
                raise RecordProblem(f"'{text[:40]}' is not a known value of column {self.column}", field_name=name)
            return self.mapping[text]
        return found


@dataclass(frozen=True)
class ChildSpec:
    """Child rows read per page of parents (lab results of lab reports)."""

    name: str
    query: str
    parent: str
    key: str
    fields: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class KindSpec:
    """How one record kind is read."""

    kind: str
    query: str
    key: str
    updated: str
    fields: Mapping[str, FieldSpec]
    children: tuple[ChildSpec, ...] = ()

    def columns(self) -> set[str]:
        """Every column the kind's own query must return."""
        return {self.key, self.updated} | {f.column for f in self.fields.values() if f.column}


@dataclass(frozen=True)
class Profile:
    """A vendor profile."""

    name: str
    version: str
    description: str
    kinds: Mapping[str, KindSpec]
    hooks: Mapping[str, Hook] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"


def _column(name: Any, where: str) -> str:
    text = str(name).strip().lower()
    if not _NAME.match(text):
        raise ProfileError(f"{where}: '{name}' is not a plain column name")
    return text


def _field(spec: Any, where: str) -> FieldSpec:
    if isinstance(spec, str):
        return FieldSpec(column=_column(spec, where))
    if not isinstance(spec, Mapping):
        raise ProfileError(f"{where}: a field is a column name or a mapping with 'column' or 'value'")
    unknown = set(spec) - {"column", "map", "default", "value"}
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    if "value" in spec:
        return FieldSpec(value=spec["value"])
    if "column" not in spec:
        raise ProfileError(f"{where}: 'column' or 'value' is required")
    mapping = spec.get("map")
    if mapping is not None and not isinstance(mapping, Mapping):
        raise ProfileError(f"{where}: 'map' must map source values to canonical values")
    return FieldSpec(
        column=_column(spec["column"], where),
        mapping={str(k): v for k, v in mapping.items()} if mapping is not None else None,
        default=spec.get("default"),
    )


def _fields(raw: Any, record: str, where: str) -> dict[str, FieldSpec]:
    if not isinstance(raw, Mapping) or not raw:
        raise ProfileError(f"{where}: 'fields' must map canonical fields to columns")
    known = _settable(record)
    fields = {}
    for name, spec in raw.items():
        if name not in known:
            raise ProfileError(f"{where}: '{name}' is not a field of {record} (fields: {', '.join(sorted(known))})")
        fields[name] = _field(spec, f"{where}.{name}")
    missing = sorted(n for n, spec in known.items() if spec.required and n not in fields)
    if missing:
        raise ProfileError(f"{where}: required fields of {record} are not mapped: {', '.join(missing)}")
    return fields


def _settable(record: str) -> dict[str, Any]:
    """The fields of a record (``LabResult`` too) a profile maps: all but the key, update time and children."""
    record_type = LabResultRecord if record == "LabResult" else RECORD_TYPES[record]
    return {n: f for n, f in _field_types(record_type).items() if n not in ("key", "updated_at", "results")}


def _kind(kind: str, raw: Any, where: str) -> KindSpec:
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{where}: expected a mapping")
    for required in ("query", "key", "updated", "fields"):
        if required not in raw:
            raise ProfileError(f"{where}: '{required}' is required")
    children = []
    for name, child in (raw.get("children") or {}).items():
        cwhere = f"{where}.children.{name}"
        if name not in _CHILD_FIELDS or not isinstance(child, Mapping):
            raise ProfileError(f"{cwhere}: unknown child rows (known: {', '.join(_CHILD_FIELDS)})")
        if "{parents}" not in str(child.get("query", "")):
            raise ProfileError(f"{cwhere}: the query must hold {{parents}} where the parent keys go")
        children.append(ChildSpec(name, str(child["query"]), _column(child.get("parent"), cwhere),
                                  _column(child.get("key"), cwhere),
                                  _fields(child.get("fields"), _CHILD_FIELDS[name], cwhere)))
    return KindSpec(kind, str(raw["query"]).strip().rstrip(";"), _column(raw["key"], where),
                    _column(raw["updated"], where), _fields(raw["fields"], kind, where), tuple(children))


def _hooks(module_name: str | None, where: str) -> dict[str, Hook]:
    if not module_name:
        return {}
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProfileError(f"{where}: hooks module '{module_name}' cannot be imported ({exc})") from None
    hooks = getattr(module, "HOOKS", None)
    if not isinstance(hooks, Mapping):
        raise ProfileError(f"{where}: hooks module '{module_name}' has no HOOKS mapping")
    return dict(hooks)


def parse_profile(data: Any, where: str = "profile") -> Profile:
    """A :class:`Profile` from parsed YAML; :class:`ProfileError` names what is wrong."""
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: expected a mapping at the top")
    for required in ("profile", "version", "records"):
        if required not in data:
            raise ProfileError(f"{where}: '{required}' is required")
    records = data["records"]
    if not isinstance(records, Mapping) or not records:
        raise ProfileError(f"{where}: 'records' must map record kinds to their queries")
    kinds = {}
    for kind in records:
        if kind not in RECORD_KINDS:
            raise ProfileError(f"{where}: '{kind}' is not a record kind ({', '.join(RECORD_KINDS)})")
    for kind in RECORD_KINDS:  # reading order: patients first
        if kind in records:
            kinds[kind] = _kind(kind, records[kind], f"{where}: records.{kind}")
    return Profile(str(data["profile"]), str(data["version"]), str(data.get("description", "")), kinds,
                   _hooks(data.get("hooks"), where), str(data.get("timezone", "Asia/Shanghai")))


def load_profile(name_or_path: str | Path) -> Profile:
    """A profile by name (``adapters/profiles/<name>.yaml``, or ``<name>.yaml`` in a directory of
    ``HUB_PROFILE_DIRS``) or by the path of a file in one of those directories."""
    roots = [PROFILE_DIR, *configured_dirs("HUB_PROFILE_DIRS")]
    text = str(name_or_path)
    if _NAME.match(text):
        candidates = [root / f"{text}.yaml" for root in roots]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    else:
        path = Path(text)
        if path.suffix not in (".yaml", ".yml") or not inside(path, roots):
            raise ProfileError(f"profile '{path.name}': a profile is a name, or a .yaml file in a directory of "
                               "HUB_PROFILE_DIRS")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError:
        raise ProfileError(f"profile '{path.name}' not found") from None
    except yaml.YAMLError as exc:  # its message quotes the file: only the place is told
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ProfileError(f"{path.name}: not valid YAML{where}") from None
    return parse_profile(data, path.name)
