"""The tele-diagnosis configuration as data: reading centers, which sites send their exams, routing rules
and SLA targets.

A YAML (or JSON) document, loaded with ``PUT /telediagnosis/config`` or ``hub telediagnosis config FILE``::

    version: "2026-12"
    claim_timeout_minutes: 30          # a claim not reported by then returns the task to the queue
    warn_at: 0.5                       # the SLA share at which the sweep reassigns or notifies
    site_levels: [primary, chc, township]   # institutions of these levels send their exams to be read
    sites: [org-ks-rehab]              # and these institutions too
    centers:
      - id: ks-imaging
        institution: org-ks-imaging    # the Organization the center is (its readers' PractitionerRole.organization)
        name: 昆山市医学影像诊断中心
        modalities: [DX, CR, CT, MR, MG, US]   # DICOM modality codes
        body_sites: []                 # only these body sites (empty: all)
        hours: ["00:00-24:00"]         # local opening hours
        supervisor: pr-ks-imaging-chief   # PractitionerRole escalated to at 100 % of the SLA
    subspecialties:                    # exams that need a reader qualified in a subspecialty
      - {modality: MR, body_sites: [头颅, "69536005"], subspecialty: neuro}
    sla_minutes:                       # per modality (``"*"``: the others) and FHIR priority
      ECG: {stat: 15, urgent: 30, asap: 60, routine: 1440}

Every problem is reported at once (400) and nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from hub.errors import InvalidRequest
from hub.fhir.search import has_control_characters

#: FHIR request priorities, most urgent first.
PRIORITIES = ("stat", "asap", "urgent", "routine")
#: Priorities balanced by instantaneous load (the rest by the load over the shift).
URGENT = frozenset({"stat", "asap", "urgent"})
#: Default SLA targets in minutes, from published hospital policies (急诊心电 15 分钟, 急诊 X 线 30 分钟,
#: 急诊 CT/MR 60 分钟, 常规 CT/MR 24 小时).
DEFAULT_SLA: dict[str, dict[str, int]] = {
    "ECG": {"stat": 15, "asap": 30, "urgent": 30, "routine": 1440},
    "DX": {"stat": 30, "asap": 60, "urgent": 60, "routine": 1440},
    "CR": {"stat": 30, "asap": 60, "urgent": 60, "routine": 1440},
    "US": {"stat": 30, "asap": 60, "urgent": 60, "routine": 1440},
    "CT": {"stat": 60, "asap": 120, "urgent": 120, "routine": 1440},
    "MR": {"stat": 60, "asap": 120, "urgent": 120, "routine": 1440},
    "*": {"stat": 60, "asap": 240, "urgent": 240, "routine": 2880},
}
DEFAULT_SITE_LEVELS = ("primary", "chc", "township")
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_HOURS = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_MODALITY = re.compile(r"^[A-Z0-9]{1,16}$")


@dataclass(frozen=True)
class Center:
    """A reading center (影像/心电/超声/病理诊断中心)."""

    center_id: str
    institution: str
    name: str
    modalities: frozenset[str]
    body_sites: frozenset[str]
    #: Opening hours as (from, to) minutes after local midnight.
    hours: tuple[tuple[int, int], ...]
    supervisor: str | None

    def reads(self, modality: str, body_site: str | None) -> bool:
        """Does the center read this modality (and body site)?"""
        return modality in self.modalities and (not self.body_sites or body_site in self.body_sites)

    def open_at(self, minute_of_day: int) -> bool:
        """Is the center open at this local minute of the day?"""
        return any(start <= minute_of_day < end for start, end in self.hours)


@dataclass(frozen=True)
class SubspecialtyRule:
    """Exams of a modality and body site that only readers of a subspecialty read."""

    modality: str
    body_sites: frozenset[str]
    subspecialty: str


@dataclass(frozen=True)
class TeleConfig:
    """The configuration in force."""

    version: str
    centers: tuple[Center, ...]
    site_levels: frozenset[str]
    sites: frozenset[str]
    subspecialties: tuple[SubspecialtyRule, ...]
    sla: dict[str, dict[str, int]]
    warn_at: float
    claim_timeout: timedelta

    def center(self, center_id: str) -> Center | None:
        """The center of that id."""
        return next((c for c in self.centers if c.center_id == center_id), None)

    def center_at(self, institution: str | None) -> Center | None:
        """The center an institution is (None: not a reading center)."""
        return next((c for c in self.centers if c.institution == institution), None)

    def sla_target(self, modality: str, priority: str) -> timedelta:
        """The time allowed from intake to report."""
        table = self.sla.get(modality) or self.sla["*"]
        return timedelta(minutes=table[priority])

    def subspecialty(self, modality: str, body_site: str | None) -> str | None:
        """The subspecialty an exam needs (None: any reader of the modality)."""
        for rule in self.subspecialties:
            if rule.modality == modality and body_site in rule.body_sites:
                return rule.subspecialty
        return None

    def modalities(self) -> frozenset[str]:
        """Every modality some center reads."""
        return frozenset(m for c in self.centers for m in c.modalities)


def parse_text(raw: bytes | str) -> dict[str, Any]:
    """A configuration document from YAML or JSON text."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        document = yaml.safe_load(text)
        controls = has_control_characters(document)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidRequest(f"The configuration is not readable YAML or JSON (UTF-8): {str(exc).splitlines()[0]}") \
            from None
    except RecursionError:
        raise InvalidRequest("The configuration is nested too deeply") from None
    if not isinstance(document, dict):
        raise InvalidRequest("The configuration must be a mapping with 'version' and 'centers'")
    if controls:
        raise InvalidRequest("The configuration must not contain control characters")
    return document


def load_config(document: dict[str, Any]) -> tuple[TeleConfig, dict[str, Any]]:
    """Check a configuration document: the configuration and its normalized JSON form (what is stored)."""
    problems: list[str] = []
    version = document.get("version")
    if not isinstance(version, (str, int, float)) or not str(version).strip() or len(str(version)) > 64:
        problems.append("version: a label of at most 64 characters is required")
    centers = [_center(i, c, problems) for i, c in enumerate(_list(document, "centers", problems))]
    ids = [c["id"] for c in centers if c and isinstance(c["id"], str)]
    if not centers:
        problems.append("centers: at least one reading center is required")
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"centers: id '{duplicate}' is used twice")
    institutions = [c["institution"] for c in centers if c and isinstance(c["institution"], str)]
    for duplicate in sorted({i for i in institutions if institutions.count(i) > 1}):
        problems.append(f"centers: institution '{duplicate}' is two centers (give one center several modalities)")
    rules = [_subspecialty(i, r, problems) for i, r in enumerate(_list(document, "subspecialties", problems))]
    sla = _sla(document.get("sla_minutes"), problems)
    warn_at = document.get("warn_at", 0.5)
    if isinstance(warn_at, bool) or not isinstance(warn_at, (int, float)) or not 0 < warn_at < 1:
        problems.append("warn_at: a share of the SLA between 0 and 1 (0.5: at half the time allowed)")
    timeout = document.get("claim_timeout_minutes", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 7 * 24 * 60:
        problems.append("claim_timeout_minutes: whole minutes from 1 to 10080")
    site_levels = _strings(document.get("site_levels", list(DEFAULT_SITE_LEVELS)), "site_levels", problems)
    sites = _strings(document.get("sites", []), "sites", problems)
    unknown = sorted(str(k) for k in set(document) - {"version", "centers", "subspecialties", "sla_minutes", "warn_at",
                                      "claim_timeout_minutes", "site_levels", "sites"})
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")
    if problems:
        raise InvalidRequest(f"The configuration has {len(problems)} problem(s): " + "; ".join(problems[:20]))
    content = {"version": str(version), "centers": centers, "subspecialties": rules, "sla_minutes": sla,
               "warn_at": float(warn_at), "claim_timeout_minutes": timeout, "site_levels": site_levels,
               "sites": sites}
    return from_json(content), content


def from_json(content: dict[str, Any]) -> TeleConfig:
    """The configuration :func:`load_config` stored."""
    return TeleConfig(
        version=content["version"],
        centers=tuple(Center(c["id"], c["institution"], c["name"], frozenset(c["modalities"]),
                             frozenset(c["body_sites"]), tuple(_window(h) for h in c["hours"]), c["supervisor"])
                      for c in content["centers"]),
        site_levels=frozenset(content["site_levels"]), sites=frozenset(content["sites"]),
        subspecialties=tuple(SubspecialtyRule(r["modality"], frozenset(r["body_sites"]), r["subspecialty"])
                             for r in content["subspecialties"]),
        sla=content["sla_minutes"], warn_at=content["warn_at"],
        claim_timeout=timedelta(minutes=content["claim_timeout_minutes"]))


def _list(document: dict[str, Any], name: str, problems: list[str]) -> list[Any]:
    value = document.get(name) or []
    if not isinstance(value, list):
        problems.append(f"{name}: a list is expected")
        return []
    return value


def _strings(value: Any, label: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and str(v).strip() for v in value):
        problems.append(f"{label}: a list of texts is expected")
        return []
    return [str(v).strip() for v in value]


def _center(index: int, raw: Any, problems: list[str]) -> dict[str, Any]:
    label = f"centers[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{label}: a mapping is expected")
        return {}
    out: dict[str, Any] = {}
    for key in ("id", "institution"):
        value = raw.get(key)
        if not isinstance(value, str) or not ID_PATTERN.match(value):
            problems.append(f"{label}.{key}: an id (letters, digits, '-', '.') is required")
        out[key] = value
    label = f"centers[{out['id']}]" if isinstance(out["id"], str) else label
    name = raw.get("name")
    out["name"] = str(name).strip() if isinstance(name, str) and name.strip() else str(out["institution"])
    out["modalities"] = sorted(_strings(raw.get("modalities"), f"{label}.modalities", problems))
    for modality in out["modalities"]:
        if not _MODALITY.match(modality):
            problems.append(f"{label}.modalities: '{modality}' is not a DICOM modality code (CT, MR, DX, US, ECG…)")
    if not out["modalities"]:
        problems.append(f"{label}.modalities: at least one modality is required")
    out["body_sites"] = sorted(_strings(raw.get("body_sites", []), f"{label}.body_sites", problems))
    out["hours"] = _strings(raw.get("hours", ["00:00-24:00"]), f"{label}.hours", problems)
    for hours in out["hours"]:
        if _window(hours) is None:
            problems.append(f"{label}.hours: '{hours}' is not a window like 08:00-17:30")
    supervisor = raw.get("supervisor")
    if supervisor is not None and (not isinstance(supervisor, str) or not ID_PATTERN.match(supervisor)):
        problems.append(f"{label}.supervisor: the PractitionerRole id of the center's supervisor")
    out["supervisor"] = supervisor
    for key in sorted(str(k) for k in set(raw) - {"id", "institution", "name", "modalities", "body_sites", "hours",
                                                  "supervisor"}):
        problems.append(f"{label}: unknown field '{key}'")
    return out


def _window(text: str) -> tuple[int, int] | None:
    found = _HOURS.match(text.strip())
    if found is None:
        return None
    start = int(found[1]) * 60 + int(found[2])
    end = int(found[3]) * 60 + int(found[4])
    if int(found[2]) > 59 or int(found[4]) > 59 or not 0 <= start < end <= 24 * 60:
        return None
    return start, end


def _subspecialty(index: int, raw: Any, problems: list[str]) -> dict[str, Any]:
    label = f"subspecialties[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("modality"), str) \
            or not isinstance(raw.get("subspecialty"), str) or not raw["subspecialty"].strip():
        problems.append(f"{label}: modality, body_sites and subspecialty are required")
        return {"modality": "", "body_sites": [], "subspecialty": ""}
    sites = _strings(raw.get("body_sites"), f"{label}.body_sites", problems)
    return {"modality": raw["modality"], "body_sites": sorted(sites), "subspecialty": raw["subspecialty"].strip()}


def _sla(raw: Any, problems: list[str]) -> dict[str, dict[str, int]]:
    out = {m: dict(t) for m, t in DEFAULT_SLA.items()}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        problems.append("sla_minutes: a mapping of modality to {priority: minutes} is expected")
        return out
    for modality, table in raw.items():
        if not isinstance(table, dict):
            problems.append(f"sla_minutes.{modality}: a mapping of priority to minutes is expected")
            continue
        row = dict(out.get(str(modality), out["*"]))
        for priority, minutes in table.items():
            if priority not in PRIORITIES:
                problems.append(f"sla_minutes.{modality}: '{priority}' is not a priority ({', '.join(PRIORITIES)})")
            elif isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 30 * 24 * 60:
                problems.append(f"sla_minutes.{modality}.{priority}: whole minutes from 1 to 43200")
            else:
                row[priority] = minutes
        out[str(modality)] = row
    return out
