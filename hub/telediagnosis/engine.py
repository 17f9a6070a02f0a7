"""One step of tele-diagnosis work inside one transaction: routing, and moving a task from one state to the
next with its row, its Task resource and the readers' loads changed together.

A reader's open-task count includes every task ``assigned`` to or ``claimed`` by them; a task given to a
reader (routed, reassigned or claimed from another) adds one to their cumulative load for the shift.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from hub.errors import BusinessRuleViolation, NotFound
from hub.fhir import jsonio
from hub.fhir.search_values import local_zone
from hub.fhir.service import FhirService
from hub.store.organizations import InstitutionTree
from hub.store.telediagnosis import TeleStore
from hub.telediagnosis.config import Center, TeleConfig
from hub.telediagnosis.readers import Reader
from hub.telediagnosis.routing import Decision, Exam, route
from hub.telediagnosis.tasks import changed, owner_reference

#: States in which a task counts in its reader's open load.
LOADED = frozenset({"assigned", "claimed"})


class Step:
    """The routing context and the Task writes of one transaction."""

    def __init__(self, service: FhirService, store: TeleStore, config: TeleConfig, tree: InstitutionTree,
                 readers: dict[str, Reader], now: datetime) -> None:
        self.service = service
        self.store = store
        self.config = config
        self.tree = tree
        self.readers = readers
        self.now = now
        self._pending: dict[str, dict[str, Any]] = {}
        #: Changes of Tasks made in this step, put on them (read once) when the step is flushed.
        self._changes: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    # -- routing -----------------------------------------------------------------------------------

    def decide(self, exam: Exam, *, exclude: frozenset[str] = frozenset(), center: Center | None = None) -> Decision:
        """Where ``exam`` goes now (``center``: only that center's readers)."""
        config = replace(self.config, centers=(center,)) if center is not None else self.config
        institutions = {c.institution for c in config.centers}
        readers = [r for r in self.readers.values() if r.institution in institutions]
        loads = self.store.loads(r.role_id for r in readers)
        local = self.now.astimezone(local_zone())
        return route(exam, config, self.tree, readers, loads, local.hour * 60 + local.minute, exclude=exclude)

    def reroute(self, row: dict[str, Any], note: str, *, exclude: frozenset[str] = frozenset()) -> str | None:
        """Give an open task to the reader routing chooses now, or put it in its center's queue when nobody
        eligible is free (or it cannot be routed any more: its center no longer reads it). The new reader's id,
        ``""`` for the queue; None when nothing changed: the task changed meanwhile, or it waits in the queue
        and still nobody is free."""
        center = self.config.center(row["center_id"])
        decision = None
        if center is not None:
            try:
                decision = self.decide(exam_of(row), exclude=exclude, center=center)
            except BusinessRuleViolation:  # the center no longer reads it: it waits in the queue for a claim
                decision = None
        reader = decision.reader if decision is not None else None
        if reader is None and row["state"] == "queued":
            return None
        owner = owner_reference(center, reader.role_id if reader else None) if center is not None else None
        if not self.move(row, ("assigned", "claimed", "queued"), "assigned" if reader else "queued",
                         reader.role_id if reader else None, {"claimed_at": None, "claim_expires": None},
                         note + (f"，分配给 {reader.name}" if reader else "，进入中心队列"), owner=owner,
                         executionPeriod=None):
            return None
        return reader.role_id if reader else ""

    # -- state changes -----------------------------------------------------------------------------

    def move(self, row: dict[str, Any], from_states: Sequence[str], state: str, reader: str | None,
             values: dict[str, Any], note: str, *, business: str | None = None, owner: dict[str, Any] | None = None,
             **fields: Any) -> bool:
        """Move a task from where ``row`` saw it (its state, one of ``from_states``, its reader and SLA step) to
        ``state`` with ``reader`` and other row ``values``; its Task (when the step is flushed) and the readers'
        loads follow. False: it is not where ``row`` saw it any more (another step moved it first: a
        compare-and-set, whose row lock also keeps every other writer off the Task until the step ends)."""
        if row["state"] not in from_states:
            return False
        seen = {"reader": row.get("reader"), "sla_level": row["sla_level"]}
        if not self.store.change(row["task_id"], (row["state"],), {"state": state, "reader": reader, **values},
                                 expect=seen):
            return False
        old_reader, old_state = row.get("reader"), row["state"]
        if old_reader and old_state in LOADED and not (old_reader == reader and state in LOADED):
            self.store.add_load(old_reader, opened=-1)
        if reader and state in LOADED and not (old_reader == reader and old_state in LOADED):
            self.store.add_load(reader, opened=1, assigned=1)
        now = self.now
        self._changes.setdefault(row["task_id"], []).append(
            lambda task: changed(task, now, note, state=state, business=business, owner=owner, **fields))
        row.update(state=state, reader=reader, **values)
        return True

    def task(self, task_id: str) -> dict[str, Any]:
        """The Task as this step leaves it."""
        self._apply([task_id], orphans="raise")
        return self._pending[task_id]

    def put(self, task: dict[str, Any]) -> None:
        """Write ``task`` when the step ends."""
        self._pending[task["id"]] = task

    def flush(self, *, orphans: str = "raise") -> list[str]:
        """Write the Tasks changed in this step (one new version each, in one batch). A task whose Task resource
        is gone (deleted through the FHIR API) raises NotFound, or (``orphans="cancel"``) is cancelled; the ids
        of those cancelled."""
        cancelled = self._apply(list(self._changes), orphans=orphans)
        if self._pending:
            self.service.upsert_many([("Task", i, t) for i, t in self._pending.items()])
            self._pending.clear()
        return cancelled

    def discard(self) -> None:
        """Forget the Task changes not yet written (their rows' changes were rolled back)."""
        self._pending.clear()
        self._changes.clear()

    def _apply(self, task_ids: list[str], *, orphans: str) -> list[str]:
        """Put the changes waiting for these Tasks on them (read in one query, after their rows were locked)."""
        unread = [i for i in task_ids if i not in self._pending]
        found = self.service.repository.read_current_many([("Task", i) for i in unread]) if unread else {}
        cancelled = []
        for task_id in task_ids:
            stored = found.get(("Task", task_id))
            if task_id not in self._pending:
                if stored is None or stored.deleted or stored.content is None:
                    if orphans == "raise":
                        raise NotFound(f"Task/{task_id} is not stored")
                    self._changes.pop(task_id, None)
                    self._cancel_orphan(task_id)
                    cancelled.append(task_id)
                    continue
                self._pending[task_id] = jsonio.loads_stored(stored.content)
            for change in self._changes.pop(task_id, ()):
                self._pending[task_id] = change(self._pending[task_id])
        return cancelled

    def _cancel_orphan(self, task_id: str) -> None:
        row = self.store.task(task_id)
        if row is None or row["state"] in ("completed", "cancelled"):
            return
        self.store.change(task_id, (row["state"],), {"state": "cancelled", "next_escalation": None,
                                                     "claim_expires": None})
        if row["reader"] and row["state"] in LOADED:
            self.store.add_load(row["reader"], opened=-1)


def exam_of(row: dict[str, Any]) -> Exam:
    """The exam a task's row reads, as routing needs it."""
    return Exam(row["site"], row["modality"], row["priority"], row.get("body_site"))
