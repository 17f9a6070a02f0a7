"""The SLA sweep: claims that timed out go back to the queue, tasks at 50 % of their SLA are reassigned or
their reader reminded, tasks past their deadline are escalated to the center's supervisor; each step is
written on the Task (``note``, ``businessStatus``), so Subscriptions on Task tell whoever watches.

The sweep reads only the tasks whose next step has come (an index on it), so its cost follows what it
changes, not the number of open tasks. :class:`TeleWorkers` runs it with APScheduler in the API process,
and the intake of new exams every second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from hub.background import PeriodicWorker
from hub.errors import BusinessRuleViolation
from hub.telediagnosis.engine import Step, exam_of
from hub.telediagnosis.service import Telediagnosis
from hub.telediagnosis.tasks import owner_reference

log = logging.getLogger("hub.telediagnosis")
#: Tasks changed per transaction.
BATCH = 500
_OPEN = ("queued", "assigned", "claimed")


@dataclass
class SweepStats:
    """What one sweep did."""

    claims_expired: int = 0
    warned: int = 0
    reassigned: int = 0
    escalated: int = 0
    queued_given: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return dict(self.__dict__)


def sweep(tele: Telediagnosis, limit: int = BATCH) -> SweepStats:
    """Act on every task whose claim expired or whose next SLA step has come (now by ``tele.clock``), then give
    queued tasks to readers who are free. The Tasks of a batch are written together; a task whose Task was
    deleted through the FHIR API is cancelled (and logged), the others go on."""
    stats = SweepStats()
    seen: set[str] = set()
    while True:
        with tele.step() as step:
            rows = [r for r in step.store.due(step.now, limit + len(seen) + 1) if r["task_id"] not in seen]
            for row in rows[:limit]:
                seen.add(row["task_id"])
                _act(step, row, stats)
            for task_id in step.flush(orphans="cancel"):  # one batch of Task writes
                log.warning("SLA sweep: Task/%s was deleted through the FHIR API; its reading task is cancelled",
                            task_id)
            if len(rows) <= limit:
                stats.queued_given += tele.drain(step, [c.center_id for c in step.config.centers])
                return stats


def _act(step: Step, row: dict[str, Any], stats: SweepStats) -> None:
    now = step.now
    if row["state"] == "claimed" and row["claim_expires"] is not None and row["claim_expires"] <= now:
        minutes = int(step.config.claim_timeout.total_seconds() // 60)
        if step.reroute(row, f"认领后 {minutes} 分钟未出报告，退回队列", exclude=frozenset({row["reader"]})) is not None:
            stats.claims_expired += 1
    if row["next_escalation"] is None or row["next_escalation"] > now or row["state"] not in _OPEN:
        return
    target = int((row["deadline"] - row["created"]).total_seconds() // 60)
    center = step.config.center(row["center_id"])
    if now >= row["deadline"]:
        supervisor = step.readers.get(center.supervisor or "") if center is not None else None
        whom = f"中心主任 {supervisor.name}" if supervisor else "中心主任"
        if _mark(step, row, 2, None, "escalated", f"已超过 SLA（{target} 分钟）未出报告，升级至{whom}"):
            stats.escalated += 1
        return
    if row["state"] == "assigned" and center is not None:
        try:
            decision = step.decide(exam_of(row), exclude=frozenset({row["reader"]}), center=center)
        except BusinessRuleViolation:  # the center no longer reads it: remind, as for a claimed task
            decision = None
        if decision is not None and decision.reader is not None:
            if step.move(row, ("assigned",), "assigned", decision.reader.role_id,
                         {"sla_level": 1, "next_escalation": row["deadline"]},
                         f"SLA 已过 50%（{target} 分钟）仍未认领，改派给 {decision.reader.name}", business="warned",
                         owner=owner_reference(decision.center, decision.reader.role_id)):
                stats.reassigned += 1
                stats.warned += 1
            return
    if _mark(step, row, 1, row["deadline"], "warned", f"SLA 已过 50%（{target} 分钟），提醒尽快出报告"):
        stats.warned += 1


def _mark(step: Step, row: dict[str, Any], level: int, next_step: datetime | None, business: str, note: str) -> bool:
    """Record an SLA step on a task that stays where it is."""
    return step.move(row, (row["state"],), row["state"], row["reader"], {"sla_level": level, "next_escalation": next_step},
                     note, business=business)


class TeleWorkers:
    """The intake (every second, at once again while exams wait) and the SLA sweep (APScheduler, every
    ``sweep_seconds``) in the background of the API process."""

    def __init__(self, tele: Telediagnosis, *, sweep_seconds: float = 30.0,
                 on_sweep: Callable[[SweepStats], None] | None = None) -> None:
        self.tele = tele
        self.intake = PeriodicWorker("hub-tele-intake", self._intake_once, 1.0, log)
        self.scheduler = BackgroundScheduler(timezone=tele.database.settings.timezone)
        self.sweep_seconds = sweep_seconds
        self.on_sweep = on_sweep

    def _intake_once(self) -> bool:
        stats = self.tele.run_intake()
        if stats.exams:
            log.info("tele-diagnosis intake: %s", stats.as_dict())
        return stats.exams >= 200

    def sweep_once(self) -> SweepStats | None:
        """One sweep (a failure is logged; the next sweep does its work)."""
        try:
            if not self.tele.configured():
                return None
            stats = sweep(self.tele)
        except Exception:  # noqa: BLE001 - the tasks wait in the database for the next sweep
            log.exception("tele-diagnosis SLA sweep failed")
            return None
        if any(stats.as_dict().values()):
            log.info("tele-diagnosis SLA sweep: %s", stats.as_dict())
        if self.on_sweep is not None:
            self.on_sweep(stats)
        return stats

    def start(self) -> None:
        """Start both."""
        self.intake.start()
        self.scheduler.add_job(self.sweep_once, "interval", seconds=self.sweep_seconds, id="hub-tele-sla-sweep",
                               max_instances=1, coalesce=True)
        self.scheduler.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop both."""
        self.intake.stop(timeout)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
