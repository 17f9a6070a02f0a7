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

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from hub.errors import BusinessRuleViolation
from hub.fhir.repository import SearchSpec
from hub.store.organizations import summary
from hub.store.repository import SqlRepository
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


@dataclass(frozen=True)
class Tree:
    """The institutional tree: each Organization's kind, level and parent."""

    nodes: Mapping[str, tuple[str, str, str]]

    def ancestor(self, org_id: str | None, kind: str) -> str | None:
        """The nearest Organization of ``kind`` at or above ``org_id``."""
        for _ in range(10):
            node = self.nodes.get(org_id or "")
            if node is None:
                return None
            if node[0] == kind:
                return org_id
            org_id = node[2]
        return None

    def level(self, org_id: str) -> str:
        """The institution's level (tertiary, secondary, primary, chc, township; '' unknown)."""
        node = self.nodes.get(org_id)
        return node[1] if node else ""


class TreeCache:
    """The institutional tree of one database, read again when an Organization changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: Any = None
        self._tree = Tree({})

    def current(self, connection: Connection) -> Tree:
        """The tree as stored now."""
        repository = SqlRepository(connection, None)
        stamp = repository.type_stamp("Organization")
        with self._lock:
            if stamp == self._stamp:
                return self._tree
        nodes = {}
        for stored in repository.search(SearchSpec("Organization", (), count=100_000)):
            if stored.content:
                fields = summary(orjson.loads(stored.content))
                nodes[fields["id"]] = (fields["kind"], fields["level"], fields["parent"])
        with self._lock:
            self._tree, self._stamp = Tree(nodes), stamp
        return self._tree


def route(exam: Exam, config: TeleConfig, tree: Tree, readers: Sequence[Reader], loads: Mapping[str, ReaderLoad],
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


def _tiers(exam: Exam, config: TeleConfig, tree: Tree) -> dict[str, list[Center]]:
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
