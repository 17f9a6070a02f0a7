"""The reading ``Task`` as FHIR: built at intake, changed at every step of its life.

=========  =============  =================================================
state      Task.status    Task.owner
=========  =============  =================================================
queued     ready          the center's Organization (no reader free)
assigned   ready          the reader's PractitionerRole (on their worklist)
claimed    in-progress    the reader who claimed it
completed  completed      the reader; ``output`` the DiagnosticReport
cancelled  cancelled      —
=========  =============  =================================================

``businessStatus`` (:data:`STATE_SYSTEM`) says the same in Chinese, or ``warned`` / ``escalated`` once the
SLA sweep acted; every step is written in ``note``. The Task is tagged with the site's and the center's
institutions: both see it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.instants import format_instant
from hub.telediagnosis.config import Center
from hub.telediagnosis.exams import ExamFacts
from hub.telediagnosis.readers import DCM

STATE_SYSTEM = "urn:hub:telediagnosis:state"
TASK_CODE = {"coding": [
    {"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill", "display": "Fulfill the focal request"},
    {"system": "urn:hub:telediagnosis:task", "code": "read", "display": "远程诊断阅片"}], "text": "远程诊断"}
STATE_DISPLAY = {"queued": "待分配", "assigned": "已分配", "claimed": "阅片中", "completed": "已报告",
                 "cancelled": "已取消", "warned": "即将超时", "escalated": "已超时，已升级"}
FHIR_STATUS = {"queued": "ready", "assigned": "ready", "claimed": "in-progress", "completed": "completed",
               "cancelled": "cancelled"}


def owner_reference(center: Center, reader: str | None) -> dict[str, Any]:
    """The Task's owner: the reader's PractitionerRole, else the center's Organization."""
    if reader is not None:
        return {"reference": f"PractitionerRole/{reader}"}
    return {"reference": f"Organization/{center.institution}", "display": center.name}


def build_task(task_id: str, exam: ExamFacts, center: Center, reader: str | None, created: datetime,
               deadline: datetime, note: str) -> dict[str, Any]:
    """The Task of a new exam to read."""
    state = "assigned" if reader else "queued"
    tags = [{"system": INSTITUTION_TAG, "code": code} for code in dict.fromkeys((exam.site, center.institution))]
    task: dict[str, Any] = {
        "resourceType": "Task", "id": task_id, "meta": {"tag": tags},
        "status": FHIR_STATUS[state], "businessStatus": business_status(state),
        "intent": "order", "priority": exam.priority, "code": TASK_CODE,
        "focus": {"reference": exam.focus},
        "authoredOn": format_instant(created), "lastModified": format_instant(created),
        "requester": {"reference": f"Organization/{exam.site}"},
        "owner": owner_reference(center, reader),
        "restriction": {"period": {"end": format_instant(deadline)},
                        "recipient": [{"reference": f"Organization/{center.institution}", "display": center.name}]},
        "input": [{"type": {"text": "modality"}, "valueCoding": {"system": DCM, "code": exam.modality}},
                  {"type": {"text": "exam"}, "valueReference": {"reference": exam.focus}}],
        "note": [{"time": format_instant(created), "text": note}],
    }
    if exam.order_ref:
        task["basedOn"] = [{"reference": exam.order_ref}]
    if exam.patient:
        task["for"] = {"reference": exam.patient}
    if exam.body_site:
        task["input"].append({"type": {"text": "bodySite"}, "valueString": exam.body_site})
    return task


def business_status(code: str) -> dict[str, Any]:
    """``businessStatus`` for a state or SLA step."""
    return {"coding": [{"system": STATE_SYSTEM, "code": code, "display": STATE_DISPLAY[code]}],
            "text": STATE_DISPLAY[code]}


def changed(task: dict[str, Any], now: datetime, note: str, *, state: str | None = None,
            owner: dict[str, Any] | None = None, business: str | None = None, **fields: Any) -> dict[str, Any]:
    """A copy of ``task`` after one step: its state (status, businessStatus), owner, other ``fields`` (None
    removes one), and the step written in ``note``."""
    out = {k: v for k, v in task.items() if k not in ("meta",)}
    out["meta"] = {"tag": list((task.get("meta") or {}).get("tag") or ())}
    if state is not None:
        out["status"] = FHIR_STATUS[state]
        out["businessStatus"] = business_status(business or state)
    elif business is not None:
        out["businessStatus"] = business_status(business)
    if owner is not None:
        out["owner"] = owner
    for name, value in fields.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    out["lastModified"] = format_instant(now)
    out["note"] = [*(task.get("note") or ()), {"time": format_instant(now), "text": note}]
    return out


def with_input(task: dict[str, Any], reference: str) -> dict[str, Any] | None:
    """``task`` with another exam resource as input (None: it has it already)."""
    inputs = list(task.get("input") or ())
    if any((i.get("valueReference") or {}).get("reference") == reference for i in inputs):
        return None
    return {**task, "input": [*inputs, {"type": {"text": "exam"}, "valueReference": {"reference": reference}}]}
