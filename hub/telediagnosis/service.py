"""Tele-diagnosis over one database: configuration, readers, intake, worklists, claims and reports.

The SLA sweep is :mod:`hub.telediagnosis.sla`'s and the figures :mod:`hub.telediagnosis.figures`'s; both
use this service's steps. Every time comes from ``clock`` (tests move it).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.coding.terminology import PROCESS_CACHE, Terminology
from hub.errors import BusinessRuleViolation, Conflict, Forbidden, HubError, InvalidRequest, NotFound
from hub.fhir import jsonio
from hub.fhir.instants import format_instant, now_utc
from hub.fhir.validation import validate_resource
from hub.store.database import Database
from hub.store.organizations import tree_cache
from hub.store.telediagnosis import OPEN_STATES, TeleStore
from hub.telediagnosis.config import PRIORITIES, TeleConfig, from_json, load_config, parse_text
from hub.telediagnosis.engine import Step
from hub.telediagnosis.exams import EXAM_ITEM, ExamFacts, order_facts, study_facts
from hub.telediagnosis.readers import Reader, reader_cache, roster_resources
from hub.telediagnosis.routing import Decision, Exam
from hub.telediagnosis.tasks import build_task, with_input

log = logging.getLogger("hub.telediagnosis")
_RANK = {p: n for n, p in enumerate(PRIORITIES)}
#: Statuses of an exam or order that was withdrawn: its reading task is cancelled.
WITHDRAWN = frozenset({"cancelled", "revoked", "entered-in-error"})
NO_CONFIG = ("No tele-diagnosis configuration has been loaded (PUT /telediagnosis/config, or "
             "hub telediagnosis config FILE)")


@dataclass
class IntakeStats:
    """What one intake run did."""

    exams: int = 0
    created: int = 0
    attached: int = 0
    cancelled: int = 0
    skipped: int = 0

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        return {"exams": self.exams, "created": self.created, "attached": self.attached,
                "cancelled": self.cancelled, "skipped": self.skipped}


class Telediagnosis:
    """分布式检查、集中式诊断 over one database."""

    def __init__(self, database: Database, clock: Callable[[], datetime] = now_utc) -> None:
        self.database = database
        self.clock = clock
        self.reader_cache = reader_cache()
        self.trees = tree_cache()
        self._lock = threading.Lock()
        self._config: tuple[int, TeleConfig] | None = None

    # -- configuration -----------------------------------------------------------------------------

    def _current_config(self, store: TeleStore) -> TeleConfig:
        stamp = store.config_stamp()
        with self._lock:
            if self._config is not None and self._config[0] == stamp:
                return self._config[1]
        stored = store.config()
        if stored is None:
            raise NotFound(NO_CONFIG)
        config = from_json(stored[1])
        with self._lock:
            self._config = (stored[0], config)
        return config

    def config(self) -> dict[str, Any]:
        """The configuration in force (JSON form); 404 when none was loaded."""
        with self.database.connection(write=False) as connection:
            stored = TeleStore(connection).config()
        if stored is None:
            raise NotFound(NO_CONFIG)
        return stored[1]

    def load_config(self, raw: bytes | str, actor: str) -> dict[str, Any]:
        """Check and put a configuration in force (its centers must be institutions of the roster)."""
        config, content = load_config(parse_text(raw))
        with self.database.tele_batch() as (service, store):
            tree = self.trees.current(service.repository)
            unknown = sorted(c.institution for c in config.centers if c.institution not in tree.nodes)
            if unknown:
                raise InvalidRequest(f"Center institution(s) {', '.join(unknown)} are not Organizations of the "
                                     "roster (hub registry load)")
            current = store.config()
            unchanged = current is not None and current[1] == content
            if not unchanged:  # the same configuration again makes no new version
                store.save_config(content, actor, self.clock())
        return {"version": config.version, "centers": len(config.centers), "unchanged": unchanged}

    def configured(self) -> bool:
        """Has a configuration been loaded?"""
        with self.database.connection(write=False) as connection:
            return TeleStore(connection).config_stamp() > 0

    def config_history(self) -> list[dict[str, Any]]:
        """Every configuration version loaded, newest first."""
        with self.database.connection(write=False) as connection:
            return TeleStore(connection).config_history()

    @contextmanager
    def step(self) -> Iterator[Step]:
        """One transaction of work with the configuration, tree and readers in force."""
        with self.database.tele_batch() as (service, store):
            config = self._current_config(store)
            step = Step(service, store, config, self.trees.current(service.repository),
                        self.reader_cache.current(service.repository), self.clock())
            yield step
            step.flush()

    # -- readers -----------------------------------------------------------------------------------

    def load_readers(self, raw: bytes | str) -> dict[str, Any]:
        """Write the Practitioner and PractitionerRole of every reader of a roster file and start or end the
        shifts it names, in one transaction."""
        with self.step() as step:
            resources, shifts = roster_resources(raw, step.config)
            checked = [validate_resource(r, r["resourceType"]) for r in resources]
            outcomes = step.service.upsert_many([(r["resourceType"], r["id"], r) for r in checked])
            step.readers = self.reader_cache.current(step.service.repository)  # the readers just written
            for role_id, on_shift in sorted(shifts.items()):
                self._shift(step, step.readers[role_id], on_shift)
        return {"readers": len(resources) // 2, "written": sum(1 for o in outcomes if o != "unchanged"),
                "shifts": len(shifts)}

    def reader(self, step: Step, role_id: str, institutions: frozenset[str] | None = None) -> Reader:
        """A reader by PractitionerRole id (``institutions``: the caller may act only for readers there)."""
        reader = step.readers.get(role_id.removeprefix("PractitionerRole/"))
        if reader is None:
            raise NotFound(f"PractitionerRole/{role_id.removeprefix('PractitionerRole/')} is not a reader "
                           "(a PractitionerRole with code urn:hub:telediagnosis:role|reader at a reading center)")
        if institutions is not None and reader.institution not in institutions:
            raise Forbidden("This client may act only for readers of its own institutions")
        return reader

    def readers(self, institutions: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Every reader with their center, qualifications, shift and load."""
        with self.step() as step:
            readers = [r for r in step.readers.values() if institutions is None or r.institution in institutions]
            loads = step.store.loads(r.role_id for r in readers)
        return [{**r.as_dict(), **loads[r.role_id].as_dict()} for r in sorted(readers, key=lambda r: r.role_id)]

    def set_shift(self, role_id: str, on_shift: bool, institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """Start or end a reader's shift. Ending it puts their unclaimed tasks back into routing; starting it
        gives them queued tasks of their center."""
        with self.step() as step:
            reader = self.reader(step, role_id, institutions)
            moved = self._shift(step, reader, on_shift)
            load = step.store.loads([reader.role_id])[reader.role_id]
        return {**reader.as_dict(), **load.as_dict(), "tasks_moved": moved}

    def _shift(self, step: Step, reader: Reader, on_shift: bool) -> int:
        step.store.set_shift(reader.role_id, on_shift, step.now)
        if on_shift:
            return self.drain(step, [c.center_id for c in step.config.centers if c.institution == reader.institution])
        moved = 0
        for row in step.store.worklist(reader=reader.role_id, states=("assigned",)):
            moved += step.reroute(row, f"{reader.name} 下班，重新分配", exclude=frozenset({reader.role_id})) is not None
        return moved

    def recount(self) -> int:
        """Count every reader's open tasks again from the tasks (a repair); the readers counted."""
        with self.database.tele_batch() as (_service, store):
            return store.recount()

    @staticmethod
    def drain(step: Step, center_ids: list[str], limit: int = 50) -> int:
        """Give queued tasks of these centers (the most urgent first) to readers free now; how many were given.
        A task nobody can take now stays in the queue (unchanged) and the next one is tried."""
        return sum(1 for row in step.store.queued(center_ids, limit) if step.reroute(row, "有医师可接收"))

    # -- intake ------------------------------------------------------------------------------------

    def run_intake(self, limit: int = 200) -> IntakeStats:
        """Take in the exams written since the last run (each in a savepoint: one that cannot be routed is
        logged and skipped, the others go on)."""
        stats = IntakeStats()
        with self.database.tele_batch() as (_service, store):
            try:
                self._current_config(store)
            except NotFound:
                store.clear_intake()  # not configured: nothing to route the exams to
                return stats
        with self.step() as step:
            events = step.store.claim_intake(limit)
            for resource_type, res_id in dict.fromkeys((t, i) for _pk, t, i in events):  # each exam once
                stats.exams += 1
                try:
                    with step.service.repository.savepoint():
                        outcome = self.take_in(step, resource_type, res_id)[0]
                        step.flush()
                except HubError as exc:
                    step.discard()  # what the exam's savepoint rolled back is not written either
                    log.warning("intake of %s/%s skipped: %s", resource_type, res_id, exc.message)
                    outcome = "skipped"
                stats.created += outcome == "created"
                stats.attached += outcome == "attached"
                stats.cancelled += outcome == "cancelled"
                stats.skipped += outcome not in ("created", "attached", "cancelled")
            step.store.remove_intake([pk for pk, _t, _i in events])
        return stats

    def take_in(self, step: Step, resource_type: str, res_id: str) -> tuple[str, dict[str, Any] | None]:
        """Create (and route) the reading task of an exam: ``created``, ``attached`` (an ImagingStudy of an order
        already being read), ``exists``, ``cancelled`` (the exam or order was withdrawn: its open task ends), or
        ``skipped:<why>``; with the task's row."""
        stored = step.service.repository.read_current(resource_type, res_id)
        if stored is None or stored.deleted or stored.content is None:
            return "skipped:not-stored", None
        resource = jsonio.loads_stored(stored.content)
        if resource.get("status") in WITHDRAWN:
            row = step.store.task_for([f"{resource_type}/{res_id}"])
            if row is not None and row["focus"] == f"{resource_type}/{res_id}" and step.move(
                    row, OPEN_STATES, "cancelled", row["reader"], {"next_escalation": None, "claim_expires": None},
                    f"检查已撤销（{resource['status']}），任务取消"):
                return "cancelled", row
            return "skipped:withdrawn", row
        if resource_type == "ImagingStudy":
            order = self._order_of(step, resource)
            facts = study_facts(resource, order)
        else:
            facts = order_facts(resource, lambda code: self._exam_item(step, code))
        if facts is None:
            return "skipped:not-an-exam-to-read", None
        existing = step.store.task_for([r for r in (facts.focus, facts.order_ref) if r])
        if existing is not None:
            if existing["focus"] != facts.focus and facts.focus.startswith("ImagingStudy/"):
                step.store.lock(existing["task_id"])
                task = with_input(step.task(existing["task_id"]), facts.focus)
                if task is not None:
                    step.put(task)
                    return "attached", existing
            return "exists", existing
        center = None
        if facts.performer is not None:  # an order sent to a center: that center does and reads it
            center = step.config.center_at(facts.performer)
            if center is None or not center.reads(facts.modality, facts.body_site):
                return "skipped:performer-is-not-a-center-for-it", None
        elif not self._sends_exams(step, facts.site):
            return "skipped:site-reads-its-own-exams", None
        elif facts.modality not in step.config.modalities():
            return f"skipped:no-center-reads-{facts.modality}", None
        row = self.create(step, facts, center=center)
        return ("created" if "decision" in row else "exists"), row

    def create(self, step: Step, facts: ExamFacts, *, center: Any = None) -> dict[str, Any]:
        """Record, route and write the Task of a new exam; its row (with the routing decision)."""
        decision = step.decide(Exam(facts.site, facts.modality, facts.priority, facts.body_site), center=center)
        target = step.config.sla_target(facts.modality, facts.priority)
        reader = decision.reader.role_id if decision.reader else None
        row = {"task_id": str(uuid.uuid4()), "focus": facts.focus, "order_ref": facts.order_ref,
               "patient": facts.patient, "site": facts.site, "center_id": decision.center.center_id,
               "modality": facts.modality, "body_site": (facts.body_site or "")[:64] or None,
               "priority": facts.priority, "state": "assigned" if reader else "queued", "reader": reader,
               "created": step.now, "deadline": step.now + target, "sla_level": 0,
               "next_escalation": step.now + target * step.config.warn_at}
        if not step.store.add_task(row):  # taken in at the same moment by another process
            existing = step.store.task_for([facts.focus])
            assert existing is not None
            return existing
        if reader:
            step.store.add_load(reader, opened=1, assigned=1)
        note = f"远程诊断申请，送 {decision.center.name}" + (
            f"，分配给 {decision.reader.name}" if decision.reader else "，进入中心队列（暂无可用医师）")
        step.put(build_task(row["task_id"], facts, decision.center, reader, step.now, row["deadline"], note))
        return {**row, "decision": decision.as_dict()}

    def request_reading(self, reference: str, access: Any) -> dict[str, Any]:
        """Take in one exam now (a site asks for it to be read): the task's row, created or found."""
        resource_type, _, res_id = reference.partition("/")
        if resource_type not in ("ImagingStudy", "ServiceRequest") or not res_id:
            raise InvalidRequest("focus must be ImagingStudy/<id> or ServiceRequest/<id>")
        with self.database.fhir_service(write=False, access=access) as service:
            service.read(resource_type, res_id)  # 404 unless the caller may read it
        with self.step() as step:
            outcome, row = self.take_in(step, resource_type, res_id)
        if row is None:
            raise BusinessRuleViolation(f"{reference} is not sent for reading ({outcome.partition(':')[2]})")
        return {"outcome": outcome, **_public(row)}

    def _order_of(self, step: Step, study: dict[str, Any]) -> dict[str, Any] | None:
        for based in study.get("basedOn") or ():
            reference = based.get("reference") if isinstance(based, dict) else None
            if isinstance(reference, str) and reference.startswith("ServiceRequest/"):
                stored = step.service.repository.read_current("ServiceRequest", reference.split("/", 1)[1])
                if stored is not None and stored.content is not None:
                    return jsonio.loads_stored(stored.content)
        return None

    @staticmethod
    def _exam_item(step: Step, code: str) -> tuple[str, str] | None:
        system = Terminology(step.service, PROCESS_CACHE).code_system(EXAM_ITEM)
        concept = system.get(code) if system is not None else None
        if concept is None or not concept.values("modality"):
            return None
        body = concept.values("body_site")
        return str(concept.values("modality")[0]), str(body[0]) if body else ""

    @staticmethod
    def _sends_exams(step: Step, site: str) -> bool:
        if step.config.center_at(site) is not None:
            return False
        return site in step.config.sites or step.tree.level(site) in step.config.site_levels

    # -- worklists and the reader's actions ----------------------------------------------------------

    def worklist(self, *, reader: str | None = None, center: str | None = None,
                 institutions: frozenset[str] | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Open tasks, most urgent first (priority, then deadline): a reader's own, their center's queue and,
        for a supervisor, the center's escalated tasks; or a whole center's."""
        with self.step() as step:
            if reader is not None:
                who = self.reader(step, reader, institutions)
                centers = [c.center_id for c in step.config.centers if c.institution == who.institution]
                rows = step.store.worklist(reader=who.role_id, limit=limit)
                rows += step.store.worklist(center_ids=centers, states=("queued",), limit=limit)
                if who.supervisor:
                    rows += [r for r in step.store.worklist(center_ids=centers, limit=limit) if r["sla_level"] >= 2]
            else:
                found = step.config.center(center or "")
                if found is None:
                    raise NotFound(f"No reading center '{center}' in the configuration")
                if institutions is not None and found.institution not in institutions:
                    raise Forbidden("This client may see only the worklists of its own institutions")
                rows = step.store.worklist(center_ids=[found.center_id], limit=limit)
        unique = {r["task_id"]: r for r in rows}.values()
        ordered = sorted(unique, key=lambda r: (_RANK.get(r["priority"], 9), r["deadline"], r["task_id"]))
        now = self.clock()
        return [{**_public(r), "overdue": r["deadline"] <= now} for r in ordered[:limit]]

    def claim(self, task_id: str, reader_id: str, institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """Claim a task for a reader of its center: one claim wins, any other gets 409."""
        with self.step() as step:
            reader = self.reader(step, reader_id, institutions)
            row = self._row(step, task_id)
            center = step.config.center(row["center_id"])
            who = f"PractitionerRole/{reader.role_id}"
            if center is None or center.institution != reader.institution:
                raise Forbidden(f"{who} is not a reader of the center Task/{task_id} is sent to")
            subspecialty = step.config.subspecialty(row["modality"], row["body_site"])
            if row["modality"] not in reader.modalities or (subspecialty and subspecialty not in reader.subspecialties):
                raise BusinessRuleViolation(f"{who} is not qualified to read {row['modality']}"
                                            + (f" ({subspecialty})" if subspecialty else ""))
            if row["state"] == "claimed" and row["reader"] == reader.role_id:
                return _public(row)  # claimed already by the same reader: the same answer again
            expires = step.now + step.config.claim_timeout
            if not step.move(row, ("queued", "assigned"), "claimed", reader.role_id,
                             {"claimed_at": step.now, "claim_expires": expires}, f"{reader.name} 认领",
                             owner={"reference": f"PractitionerRole/{reader.role_id}"},
                             executionPeriod={"start": format_instant(step.now)}):
                now = self._row(step, task_id)  # the claim that won, as committed
                if now["state"] == "claimed" and now["reader"] == reader.role_id:
                    return _public(now)  # the same reader's claim sent twice at once
                raise Conflict(f"Task/{task_id} was claimed by another reader, or is no longer open")
        return _public(row)

    def release(self, task_id: str, reader_id: str, reason: str = "",
                institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """Give a task back: it is routed again, to another reader (or the center's queue)."""
        with self.step() as step:
            reader = self.reader(step, reader_id, institutions)
            row = self._row(step, task_id)
            if row["state"] not in ("assigned", "claimed") or row["reader"] != reader.role_id:
                raise Conflict(f"Task/{task_id} is not assigned to or claimed by PractitionerRole/{reader.role_id}")
            note = f"{reader.name} 退回" + (f"：{reason.strip()[:200]}" if reason.strip() else "")
            if step.reroute(row, note, exclude=frozenset({reader.role_id})) is None:
                raise Conflict(f"Task/{task_id} changed meanwhile; try again")
        return _public(row)

    def report(self, task_id: str, reader_id: str, body: Any,
               institutions: frozenset[str] | None = None) -> dict[str, Any]:
        """Store the reader's DiagnosticReport and complete the task: the report goes back to the site (tagged
        with its institution, so its searches and Subscriptions see it)."""
        if not isinstance(body, dict) or body.get("resourceType") != "DiagnosticReport":
            raise InvalidRequest("The body must be a DiagnosticReport")
        jsonio.check_text(body)
        if body.get("status") not in ("final", "amended", "corrected"):
            raise BusinessRuleViolation("A report that completes a reading task must be final (status final, "
                                        "amended or corrected)")
        with self.step() as step:
            reader = self.reader(step, reader_id, institutions)
            row = self._row(step, task_id)
            if row["state"] != "claimed" or row["reader"] != reader.role_id:
                raise Conflict(f"Task/{task_id} is not claimed by PractitionerRole/{reader.role_id}: claim it first")
            center = step.config.center(row["center_id"])
            report = _report(body, row, reader, center.institution if center else reader.institution)
            created = step.service.create("DiagnosticReport", report)
            reference = f"DiagnosticReport/{created.resource.id}"  # type: ignore[union-attr]
            task = step.task(task_id)
            period = {**(task.get("executionPeriod") or {}), "end": format_instant(step.now)}
            if not step.move(row, ("claimed",), "completed", reader.role_id,
                             {"completed_at": step.now, "report": reference, "next_escalation": None,
                              "claim_expires": None},
                             f"{reader.name} 发出报告", executionPeriod=period,
                             output=[{"type": {"text": "report"}, "valueReference": {"reference": reference}}]):
                # the claim timed out (or was released) meanwhile: nothing of this report is kept
                raise Conflict(f"Task/{task_id} is no longer claimed by PractitionerRole/{reader.role_id}")
            self.drain(step, [row["center_id"]], limit=1)
        return {**_public(row), "report": reference}

    @staticmethod
    def _row(step: Step, task_id: str) -> dict[str, Any]:
        row = step.store.task(task_id)
        if row is None:
            raise NotFound(f"No reading task Task/{task_id}")
        return row

    def route_preview(self, site: str, modality: str, priority: str = "routine",
                      body_site: str | None = None) -> Decision:
        """Where an exam would go now, with every reader considered and why (nothing is written)."""
        if priority not in PRIORITIES:
            raise InvalidRequest(f"priority must be one of {', '.join(PRIORITIES)}")
        with self.step() as step:
            return step.decide(Exam(site, modality, priority, body_site))


def _report(body: dict[str, Any], row: dict[str, Any], reader: Reader, center_institution: str) -> dict[str, Any]:
    """The reader's report linked to the exam, the order, the patient and the reader, tagged for both sides."""
    report = {k: v for k, v in body.items() if k not in ("id", "meta")}
    tags = [{"system": "urn:hub:institution", "code": c} for c in dict.fromkeys((row["site"], center_institution))]
    report["meta"] = {"tag": tags}
    if row.get("patient"):
        report["subject"] = {"reference": row["patient"]}
    if row.get("order_ref"):
        report["basedOn"] = [{"reference": row["order_ref"]}]
    if row["focus"].startswith("ImagingStudy/"):
        report["imagingStudy"] = [{"reference": row["focus"]}]
    performers = [{"reference": f"PractitionerRole/{reader.role_id}", "display": reader.name},
                  {"reference": f"Organization/{center_institution}"}]
    report["performer"] = performers
    report["resultsInterpreter"] = [performers[0]]
    return validate_resource(report, "DiagnosticReport")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A task row as the API shows it."""
    out = {"task": f"Task/{row['task_id']}", "focus": row["focus"], "order": row.get("order_ref"),
           "patient": row.get("patient"), "site": row["site"], "center": row["center_id"],
           "modality": row["modality"], "body_site": row.get("body_site"), "priority": row["priority"],
           "state": row["state"], "reader": f"PractitionerRole/{row['reader']}" if row.get("reader") else None,
           "sla_level": row["sla_level"]}
    for name in ("created", "deadline", "claimed_at", "claim_expires", "completed_at"):
        value = row.get(name)
        out[name] = value.isoformat() if isinstance(value, datetime) else None
    if "decision" in row:
        out["decision"] = row["decision"]
    return out

