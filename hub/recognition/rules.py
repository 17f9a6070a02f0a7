"""The recognition rules in force: which results qualify (HR) and which may be offered to whom.

A result qualifies for recognition (互认, marked **HR**) when its code is a catalogue item, it is
final, and its performing institution met the item's qualification for the result's year: a passing
external quality assessment (室间质评) for the item and year, or (a level rule) a hospital level at or
above the item's. Whether a qualifying result may be offered for a given order depends on the order
too (validity window, scope); that is :mod:`hub.recognition.check`'s.

:class:`RulesCache` keeps the rules of one database in memory and reloads them when the catalogue,
the quality-control records or the institutions changed, in this process or another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.search_values import date_range, local_zone, micros_to_datetime
from hub.recognition.catalogue import EMPTY, LEVEL_RANK, Catalogue, Item, from_json
from hub.store.organizations import Institution, ancestor, load_tree
from hub.store.recognition import RecognitionStore
from hub.store.repository import SqlRepository

#: The HR mark on qualifying results.
HR_SYSTEM = "urn:hub:recognition"
HR_TAG = {"system": HR_SYSTEM, "code": "HR", "display": "检查检验结果互认"}
#: Result statuses that are final (a preliminary or cancelled result is never recognized).
FINAL = frozenset({"final", "amended", "corrected", "appended"})
RESULT_TYPES = frozenset({"Observation", "DiagnosticReport"})


@dataclass(frozen=True)
class Rules:
    """The catalogue, the quality-control results and the institutional tree, at one moment."""

    catalogue: Catalogue = EMPTY
    eqa: dict[tuple[str, str, int], bool] = field(default_factory=dict)
    institutions: dict[str, Institution] = field(default_factory=dict)

    def item_of(self, resource: dict[str, Any]) -> Item | None:
        """The catalogue item a result's code is (any of its codings)."""
        concept = resource.get("code")
        for coding in (concept.get("coding") or ()) if isinstance(concept, dict) else ():
            if isinstance(coding, dict):
                item = self.catalogue.item_for(coding.get("system"), coding.get("code"))
                if item is not None:
                    return item
        return None

    def ancestor(self, org_id: str | None, kind: str) -> str | None:
        """The consortium (or region) an institution belongs to."""
        return ancestor(self.institutions, org_id, kind)

    def institution_of(self, org_id: str | None) -> str | None:
        """The institution an Organization is: a department is its institution's; one the roster does not
        describe is itself."""
        return self.ancestor(org_id, "institution") or org_id

    def in_scope(self, item: Item, orderer: str, performer: str) -> bool:
        """Whether a result done at ``performer`` may be offered to ``orderer`` (same consortium or region)."""
        if orderer == performer:
            return True
        shared = self.ancestor(orderer, item.scope)
        return shared is not None and shared == self.ancestor(performer, item.scope)

    def qualified(self, item: Item, institution: str | None, year: int | None) -> bool:
        """Whether ``institution`` met the item's qualification in ``year``: its level, or the latest 室间质评
        round recorded for the item within the item's ``eqa_valid_years`` (the result's year first)."""
        if not institution:
            return False
        if item.rule == "level":
            org = self.institutions.get(institution)
            rank = LEVEL_RANK.get(org.level, 0) if org is not None else 0
            return rank >= LEVEL_RANK.get(item.min_level or "", 99)
        if year is None:
            return False
        for round_year in range(year, year - item.eqa_valid_years, -1):  # the latest round recorded decides
            passed = self.eqa.get((institution, item.item_id, round_year))
            if passed is not None:
                return passed
        return False

    def is_hr(self, resource_type: str, resource: dict[str, Any]) -> bool:
        """Whether a result qualifies for recognition (carries HR)."""
        if resource_type not in RESULT_TYPES or resource.get("status") not in FINAL:
            return False
        item = self.item_of(resource)
        if item is None or item.resource_type != resource_type:
            return False
        return self.qualified(item, self.institution_of(performer_of(resource)), result_year(result_time(resource)))


def performer_of(resource: dict[str, Any]) -> str | None:
    """The performing Organization: the first ``performer`` Organization, else the owning institution's tag
    (:meth:`Rules.institution_of` takes a department to its institution)."""
    for performer in resource.get("performer") or ():
        reference = performer.get("reference") if isinstance(performer, dict) else None
        if isinstance(reference, str) and reference.startswith("Organization/"):
            return reference.split("/", 1)[1]
    meta = resource.get("meta")
    for tag in (meta.get("tag") or ()) if isinstance(meta, dict) else ():
        if isinstance(tag, dict) and tag.get("system") == INSTITUTION_TAG and tag.get("code"):
            return str(tag["code"])
    return None


def result_time(resource: dict[str, Any]) -> datetime | None:
    """When a result was obtained: ``effective[x]`` (a period's start), else ``issued``."""
    period = resource.get("effectivePeriod")
    for text in (resource.get("effectiveDateTime"), resource.get("effectiveInstant"),
                 period.get("start") if isinstance(period, dict) else None, resource.get("issued")):
        if isinstance(text, str):
            found = date_range(text)
            if found is not None:
                return micros_to_datetime(found[0])
    return None


def result_year(moment: datetime | None) -> int | None:
    """The year a result counts in for quality control: its local (``HUB_TIMEZONE``) year."""
    return moment.astimezone(local_zone()).year if moment is not None else None


def load_rules(connection: Connection) -> Rules:
    """The rules as stored now."""
    store = RecognitionStore(connection)
    stored = store.catalogue()
    return Rules(from_json(stored), store.results(), dict(load_tree(SqlRepository(connection, None)).nodes))


class RulesCache:
    """The rules of one database, reloaded when they changed (one indexed read per unit of work)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._rules = Rules()

    def current(self, connection: Connection, *, lock: bool = False) -> Rules:
        """The rules in force, as this transaction sees them (``lock``: a transaction writing results holds
        them until it ends, see :meth:`RecognitionStore.stamp`)."""
        stamp = (RecognitionStore(connection).stamp(lock=lock),
                 SqlRepository(connection, None).type_stamp("Organization"))
        if stamp != self._stamp:
            rules = load_rules(connection)
            with self._lock:
                self._rules, self._stamp = rules, stamp
            return rules
        return self._rules
