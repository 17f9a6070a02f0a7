"""The dashboards' service: keeps the facts up to date, evaluates the indicators, installs their Measures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from hub.background import PeriodicWorker
from hub.dashboards.definitions import MeasureDef, measures
from hub.dashboards.evaluation import ALL, Evaluation, Unit, evaluate, resolve, units
from hub.dashboards.facts import facts
from hub.dashboards.indicators import EVALUATORS, Context
from hub.errors import NotFound, VersionConflict
from hub.fhir import jsonio
from hub.fhir.access import patient_data_types
from hub.fhir.instants import now_utc
from hub.privacy.masking import clip
from hub.store.dashboard_tables import dash_change, dash_fact, dash_total
from hub.store.dashboards import DashboardStore
from hub.store.database import Database
from hub.store.organizations import InstitutionTree, tree_cache
from hub.store.repository import SqlRepository
from hub.telediagnosis.figures import local_days

log = logging.getLogger("hub.dashboards")
#: Writes read per transaction when the facts catch up.
BATCH = 2_000
#: An evaluation first reads at most this many waiting writes itself (the rest of a larger backlog, after a bulk
#: load or the migration, is left to the background worker or ``hub dashboards refresh``: the report says pending).
CATCH_UP = 5_000
#: During a long catch-up, the facts' planner statistics are refreshed after this many resources (without them
#: PostgreSQL deletes a resource's old facts by scanning the table).
ANALYZE_EVERY = 50_000
#: The PostgreSQL advisory lock that lets one process at a time bring the facts up to date.
LOCK_KEY = "hub-dashboard-facts"


@dataclass
class RefreshStats:
    """What one catch-up did."""

    changes: int = 0
    resources: int = 0
    facts: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts as JSON."""
        return {"changes": self.changes, "resources": self.resources, "facts": self.facts}


class Dashboards:
    """The indicators of one database."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = now_utc) -> None:
        self.database = database
        self.clock = clock
        self.trees = tree_cache()

    # -- facts ----------------------------------------------------------------------------------

    def refresh(self, limit: int | None = None) -> RefreshStats:
        """Read the queued writes into facts (all of them, or about ``limit``), one batch per transaction."""
        stats = RefreshStats()
        analyzed = 0
        while limit is None or stats.changes < limit:
            if stats.resources - analyzed >= ANALYZE_EVERY:  # a bulk catch-up outgrows the planner's statistics
                self.database.analyze(dash_fact, dash_change)
                analyzed = stats.resources
            with self.database.connection(write=True) as connection:
                repository = SqlRepository(connection, None)  # facts need no personal data: read it sealed
                repository.lock([LOCK_KEY])
                store = DashboardStore(connection)
                changes = store.claim_changes(BATCH if limit is None else min(BATCH, limit - stats.changes))
                if not changes:
                    break
                keys = list(dict.fromkeys((t, i) for _pk, t, i in changes))
                current = repository.read_current_many(keys)
                rows = []
                for key in keys:
                    stored = current.get(key)
                    if stored is None or stored.deleted or stored.content is None:
                        continue
                    try:
                        found = facts(key[0], _parsed(stored.content))
                    except Exception as exc:  # noqa: BLE001 - one odd resource must not stop the counting of all others
                        # the kind of error only: its message could quote the resource's values
                        log.warning("no facts read from %s/%s: %s", key[0], key[1], type(exc).__name__)
                        continue
                    rows.extend({"resource_type": key[0], "res_id": key[1], **fact.__dict__} for fact in found)
                store.replace_facts(keys, rows)
                store.remove_changes([pk for pk, _t, _i in changes])
                stats.changes += len(changes)
                stats.resources += len(keys)
                stats.facts += len(rows)
        return stats

    def rebuild(self) -> RefreshStats:
        """Forget every fact and read every current resource again (after ``HUB_TIMEZONE`` changed, or to repair)."""
        with self.database.connection(write=True) as connection:
            SqlRepository(connection, None).lock([LOCK_KEY])
            DashboardStore(connection).queue_everything(patient_data_types())
        stats = self.refresh()
        self.database.analyze(dash_fact, dash_total, dash_change, vacuum=True)  # every fact was rewritten
        return stats

    def pending(self) -> int:
        """Writes not yet read into facts."""
        with self.database.connection(write=False) as connection:
            return DashboardStore(connection).pending()

    # -- indicators -----------------------------------------------------------------------------

    def tree(self) -> InstitutionTree:
        """The institutional tree as stored now."""
        with self.database.unit_of_work(write=False) as repository:
            return self.trees.current(repository)

    def units(self, reach: frozenset[str] | None) -> list[dict[str, Any]]:
        """The units a caller reaching ``reach`` may choose, each with its parent (for the page's filters)."""
        tree = self.tree()
        allowed = units(tree, reach)
        out = []
        for unit in allowed.values():
            parent = tree.nodes[unit.unit_id].parent if unit.unit_id in tree.nodes else None
            # a unit whose parent the caller may not see hangs under ALL (""); ALL itself has none
            out.append({"id": unit.unit_id, "name": unit.name, "kind": unit.kind,
                        "parent": None if unit.unit_id == ALL else (parent if parent in allowed else ALL),
                        "institutions": len(unit.institutions)})
        return out

    def evaluate(self, measure_id: str, first: date, last: date, unit_id: str | None,
                 reach: frozenset[str] | None) -> Evaluation:
        """Indicator ``measure_id`` over the local days ``first`` to ``last`` for unit ``unit_id`` (None: all the
        caller reaches), with the facts brought up to date first."""
        return self.evaluate_many([measure_id], first, last, unit_id, reach)[0]

    def evaluate_many(self, measure_ids: list[str], first: date, last: date, unit_id: str | None,
                      reach: frozenset[str] | None) -> list[Evaluation]:
        """Several indicators for one unit, read in one transaction."""
        definitions = [self.measure(m) for m in measure_ids]
        local_days(first, last)  # checks the period (years 1900–2100, at most ten years, in order)
        waiting = self.pending()
        if waiting:
            self.refresh(limit=CATCH_UP)
            waiting = self.pending()
        tree = self.tree()
        unit, below = resolve(tree, unit_id, reach)
        with self.database.connection(write=False) as connection:
            context = Context(connection, tree, first, last, self.clock())
            return [self._evaluate(definition, context, unit, below, waiting) for definition in definitions]

    def _evaluate(self, definition: MeasureDef, context: Context, unit: Unit, below: list[Unit],
                  waiting: int) -> Evaluation:
        computed = EVALUATORS[definition.measure_id](context)
        return evaluate(definition, computed, context.tree, unit, below, context.first, context.last, waiting)

    @staticmethod
    def measure(measure_id: str) -> MeasureDef:
        """The indicator's definition (404 if there is none)."""
        found = measures().get(measure_id)
        if found is None:
            raise NotFound(f"Measure/{clip(measure_id, 64)} is not an indicator of the hub (known: "
                           f"{', '.join(measures())})")
        return found

    @staticmethod
    def measure_by_url(url: str) -> MeasureDef:
        """The indicator whose canonical URL (or id) is ``url`` (a ``|version`` suffix is ignored)."""
        canonical = url.split("|", 1)[0]
        for definition in measures().values():
            if canonical in (definition.url, definition.measure_id, f"Measure/{definition.measure_id}"):
                return definition
        raise NotFound(f"No indicator has the canonical URL {clip(canonical, 200)}")

    def install_measures(self) -> list[str]:
        """Store the indicators' Measures (a new version only where the definition changed); what each became."""
        try:
            with self.database.fhir_service(write=True) as service:
                return [f"{d.measure_id}: {service.update('Measure', d.measure_id, dict(d.resource)).status}"
                        for d in measures().values()]
        except VersionConflict:  # another process, starting at the same moment, stored them
            return self.install_measures()


def _parsed(content: str | bytes) -> dict[str, Any]:
    """Stored JSON (orjson; the exact decimal parser for numbers beyond a double's range, which the store keeps)."""
    try:
        return orjson.loads(content)  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return jsonio.loads_stored(content if isinstance(content, bytes) else content.encode())  # type: ignore[no-any-return]


class DashboardWorker:
    """Brings the facts up to date in the background of the API process (every few seconds)."""

    def __init__(self, dashboards: Dashboards, interval: float = 5.0) -> None:
        self.dashboards = dashboards
        self.worker = PeriodicWorker("hub-dashboard-facts", self._once, interval, log)

    def _once(self) -> bool:
        stats = self.dashboards.refresh(limit=BATCH * 5)
        return stats.changes >= BATCH * 5

    def start(self) -> None:
        """Start the thread."""
        self.worker.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop it after the current batch."""
        self.worker.stop(timeout)
