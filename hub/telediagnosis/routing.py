"""Routing an exam to a reading center and a reader: rules as data, deterministic for equal inputs.

1. **Centers**: those that read the exam's modality (and body site), in the site's own consortium first,
   then elsewhere in its region; centers outside the region never.
2. **Readers** of those centers are eligible when on shift, at an open center, qualified for the modality
   (and for the subspecialty the exam's body site needs), and, for routine work, below their capacity.
3. **Balance**: ``stat``/``asap``/``urgent`` go to the eligible reader with the least instantaneous load
   (open tasks), ``routine`` to the one with the least cumulative load over the shift (tasks given since the
   shift started); ties go to the other load, then to readers before supervisors, then to the
   PractitionerRole id.
4. No eligible reader in the site's consortium: the region's readers; none at all: the task waits in the
   queue of the first center that reads it (open ones first), for the next reader who frees up or claims it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.errors import BusinessRuleViolation
from hub.store.organizations import InstitutionTree
from hub.store.telediagnosis import ReaderLoad
from hub.telediagnosis.config import URGENT, Center, TeleConfig
from hub.telediagnosis.readers import Reader


@dataclass(frozen=True)
class Exam:
    """What routing needs of an exam."""

    site: str
    modality: str
    priority: str
    body_site: str | None = None


@dataclass(frozen=True)
class Decision:
    """Where an exam goes: a center, and a reader unless it waits in the center's queue."""

    center: Center
    reader: Reader | None
    #: ``consortium`` or ``region``: how far from the site the center is.
    tier: str
    #: Why each reader considered was or was not eligible (for the explanation).
    considered: tuple[dict[str, Any], ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"center": self.center.center_id, "institution": self.center.institution,
                "reader": f"PractitionerRole/{self.reader.role_id}" if self.reader else None,
                "tier": self.tier, "considered": list(self.considered)}


def route(exam: Exam, config: TeleConfig, tree: InstitutionTree, readers: Sequence[Reader], loads: Mapping[str, ReaderLoad],
          minute_of_day: int, *, exclude: frozenset[str] = frozenset()) -> Decision:
    """The center and reader for ``exam`` at local ``minute_of_day`` (``exclude``: readers not to choose)."""
    tiers = _tiers(exam, config, tree)
    if not any(tiers.values()):
        raise BusinessRuleViolation(f"No reading center of the site's region reads {exam.modality}"
                                    + (f" ({exam.body_site})" if exam.body_site else ""))
    subspecialty = config.subspecialty(exam.modality, exam.body_site)
    considered: list[dict[str, Any]] = []
    for tier, centers in tiers.items():
        by_institution = {c.institution: c for c in centers}
        eligible: list[tuple[Reader, ReaderLoad]] = []
        for reader in sorted((r for r in readers if r.institution in by_institution), key=lambda r: r.role_id):
            load = loads.get(reader.role_id) or ReaderLoad(reader.role_id)
            why = _ineligible(reader, load, by_institution[reader.institution], exam, subspecialty, minute_of_day,
                              exclude)
            considered.append({"reader": f"PractitionerRole/{reader.role_id}", "tier": tier,
                               "eligible": why is None, "reason": why, **load.as_dict()})
            if why is None:
                eligible.append((reader, load))
        if eligible:
            reader, _load = min(eligible, key=lambda pair: _balance(exam.priority, *pair))
            return Decision(by_institution[reader.institution], reader, tier, tuple(considered))
    tier, centers = next((t, c) for t, c in tiers.items() if c)
    waiting = next((c for c in centers if c.open_at(minute_of_day)), centers[0])
    return Decision(waiting, None, tier, tuple(considered))


def _tiers(exam: Exam, config: TeleConfig, tree: InstitutionTree) -> dict[str, list[Center]]:
    consortium = tree.ancestor(exam.site, "consortium")
    region = tree.ancestor(exam.site, "region")
    tiers: dict[str, list[Center]] = {"consortium": [], "region": []}
    for center in sorted(config.centers, key=lambda c: c.center_id):
        if not center.reads(exam.modality, exam.body_site):
            continue
        if consortium is not None and tree.ancestor(center.institution, "consortium") == consortium:
            tiers["consortium"].append(center)
        elif region is not None and tree.ancestor(center.institution, "region") == region:
            tiers["region"].append(center)
    return tiers


def _ineligible(reader: Reader, load: ReaderLoad, center: Center, exam: Exam, subspecialty: str | None,
                minute_of_day: int, exclude: frozenset[str]) -> str | None:
    """Why a reader may not take the exam (None: eligible)."""
    if reader.role_id in exclude:
        return "excluded"
    if exam.modality not in reader.modalities:
        return "not-qualified"
    if subspecialty is not None and subspecialty not in reader.subspecialties:
        return f"needs-subspecialty:{subspecialty}"
    if not load.on_shift:
        return "off-shift"
    if not center.open_at(minute_of_day):
        return "center-closed"
    if exam.priority not in URGENT and load.open_tasks >= reader.capacity:
        return "at-capacity"  # emergencies go to an on-shift reader even when all are full
    return None


def _balance(priority: str, reader: Reader, load: ReaderLoad) -> tuple[int, int, bool, str]:
    """The order of eligible readers (the least first; supervisors after readers at equal load)."""
    if priority in URGENT:
        return load.open_tasks, load.shift_assigned, reader.supervisor, reader.role_id
    return load.shift_assigned, load.open_tasks, reader.supervisor, reader.role_id
