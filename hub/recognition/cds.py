"""CDS Hooks (1.x / 2.0 ``feedback``) services for 检查检验结果互认 at order time.

Two services, one per hook: ``order-select`` (checks the orders just selected) and ``order-sign``
(checks every draft order). The request carries the patient (``context.patientId``, and the
``patient`` prefetch whose identifiers the EMPI knows) and the draft ``ServiceRequest``s; each
order whose item has a recognizable prior result gets a warning card in Chinese with the result and
where it was done, the suggestions 取消本次申请 (delete the draft order) and 仍然开立, and the six
re-test reasons as ``overrideReasons``. The card's uuid is the recorded check; ``feedback`` records
the decision (accepted → recognized; overridden or 仍然开立 → re-tested, with its reason). An order
checked again (order-select, then order-sign) replaces its undecided check, and gets no card once decided.
The caller authenticates with the hub's bearer token (SMART Backend Services), not the CDS Hooks JWT.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from hub.errors import InvalidRequest, NotFound
from hub.fhir.access import INSTITUTION_TAG
from hub.recognition.check import CheckRequest, CheckResult
from hub.recognition.decisions import REASON_SYSTEM, RECOGNIZED, RETEST_REASONS, RETESTED, Decision

SERVICES = {
    "hr-order-select": {
        "hook": "order-select", "id": "hr-order-select", "title": "检查检验结果互认（选择医嘱时）",
        "description": "选择检查检验医嘱时，提示患者在医联体内可互认的既往结果（HR），避免重复检查检验。",
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
    },
    "hr-order-sign": {
        "hook": "order-sign", "id": "hr-order-sign", "title": "检查检验结果互认（签署医嘱时）",
        "description": "签署检查检验医嘱前，提示患者在医联体内可互认的既往结果（HR），避免重复检查检验。",
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
    },
}
_SOURCE = {"label": "区域检查检验结果互认", "topic": {"system": "urn:hub:cds-topic", "code": "result-recognition",
                                                 "display": "检查检验结果互认"}}
_NAMESPACE = uuid.UUID("6c1f1f52-2b9d-4d59-9a57-1f0c4e1f2a77")
CANCEL, KEEP = "cancel", "keep"


def discovery() -> dict[str, Any]:
    """``GET /cds-services``."""
    return {"services": list(SERVICES.values())}


def service_of(service_id: str) -> dict[str, Any]:
    """A service's definition; 404 for an unknown one."""
    service = SERVICES.get(service_id)
    if service is None:
        raise NotFound(f"No CDS service '{service_id}' (see GET /cds-services)")
    return service


def suggestion_id(check_id: str, kind: str) -> str:
    """The uuid of a card's suggestion (derived from the check: feedback names it)."""
    return str(uuid.uuid5(_NAMESPACE, f"{check_id}:{kind}"))


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"{where} must be a JSON array")
    return value


def _orders(request: dict[str, Any], hook: str) -> list[dict[str, Any]]:
    context = request["context"]
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("context.draftOrders must be a Bundle of the draft orders")
    orders = [e.get("resource") for e in _list(bundle.get("entry"), "context.draftOrders.entry")
              if isinstance(e, dict)]
    orders = [o for o in orders if isinstance(o, dict) and o.get("resourceType") == "ServiceRequest"]
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
            raise InvalidRequest("context.selections must list the selected orders (ServiceRequest/<id>)")
        orders = [o for o in orders if f"ServiceRequest/{o.get('id')}" in selections]
    return orders


def _patient_keys(request: dict[str, Any]) -> list[str]:
    """What names the patient: the prefetched Patient's identifiers first, then ``context.patientId``."""
    keys = []
    prefetch = request.get("prefetch")
    prefetched = prefetch.get("patient") if isinstance(prefetch, dict) else None
    if isinstance(prefetched, dict) and prefetched.get("resourceType") == "Patient":
        for identifier in _list(prefetched.get("identifier"), "prefetch.patient.identifier"):
            if isinstance(identifier, dict) and isinstance(identifier.get("system"), str) \
                    and isinstance(identifier.get("value"), str) and identifier["system"] and identifier["value"]:
                keys.append(f"{identifier['system']}|{identifier['value']}")
    patient_id = request["context"].get("patientId")
    if isinstance(patient_id, str) and patient_id:
        keys.append(f"Patient/{patient_id}")
    return keys


def _institution(order: dict[str, Any], home: frozenset[str]) -> str | None:
    meta = order.get("meta")
    for tag in _list(meta.get("tag"), "ServiceRequest.meta.tag") if isinstance(meta, dict) else ():
        if isinstance(tag, dict) and tag.get("system") == INSTITUTION_TAG and isinstance(tag.get("code"), str):
            return tag["code"]
    return next(iter(home)) if len(home) == 1 else None


def _codes(order: dict[str, Any]) -> list[str]:
    concept = order.get("code")
    if not isinstance(concept, dict):
        return []
    return [f"{c['system']}|{c['code']}" for c in _list(concept.get("coding"), "ServiceRequest.code.coding")
            if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
            and c["system"] and c["code"]]


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def check_requests(service_id: str, request: Any, home: frozenset[str], bound: bool,
                   patient_known: Callable[[str], bool]) -> list[CheckRequest]:
    """The checks a hook request asks for (one per draft order with a code; its codings tried in turn)."""
    hook = service_of(service_id)["hook"]
    if not isinstance(request, dict):
        raise InvalidRequest("A CDS Hooks request is a JSON object")
    if request.get("hook") != hook:
        raise InvalidRequest(f"Service {service_id} answers the hook '{hook}', not '{request.get('hook')}'")
    if not isinstance(request.get("hookInstance"), str) or not request["hookInstance"]:
        raise InvalidRequest("hookInstance (a UUID) is required")
    if not isinstance(request.get("context"), dict):
        raise InvalidRequest("context is required")
    keys = _patient_keys(request)
    if not keys:
        raise InvalidRequest("context.patientId is required")
    patient = next((k for k in keys if patient_known(k)), keys[-1])
    clinician = _text(request["context"].get("userId"), 200)
    out = []
    for order in _orders(request, hook):
        institution = _institution(order, home)
        if institution is None:
            raise InvalidRequest("The ordering institution is unknown: tag the ServiceRequest with meta.tag "
                                 f"{INSTITUTION_TAG}, or use a client bound to one institution")
        codes = _codes(order)
        if not codes:
            continue
        order_id = order.get("id")
        out.append(CheckRequest(patient, institution, codes[0], origin=hook,
                                order_ref=f"ServiceRequest/{order_id}"[:200] if isinstance(order_id, str) else None,
                                alternatives=tuple(codes[1:]), bound=bound, clinician=clinician,
                                hook_instance=_text(request["hookInstance"], 64)))
    return out


def _detail(result: CheckResult) -> str:
    lines = ["| 结果 | 检查检验机构 | 时间 |", "| --- | --- | --- |"]
    for entry in result.recognizable[:5]:
        value = entry.get("conclusion") if entry["result"].startswith("DiagnosticReport/") else (
            f"{entry.get('comparator') or ''}{entry.get('value')} {entry.get('unit') or ''}".strip())
        lines.append(f"| {value or '见报告'} | {entry.get('institution_name') or entry.get('institution')} "
                     f"| {entry['date'][:16].replace('T', ' ')} |")
    lines.append("")
    lines.append("以上结果来自通过质控的机构（HR），按《医疗机构检查检验结果互认管理办法》应予互认。"
                 "如需重新检查检验，请选择原因。")
    return "\n".join(lines)


def cards(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The cards answering a hook request: one per order with a recognizable prior result (none for an order
    already decided on in an earlier call)."""
    out = []
    for result in results:
        if not result.recognizable or result.item is None or result.already_decided:
            continue
        best = result.recognizable[0]
        where = best.get("institution_name") or best.get("institution")
        summary = f"{result.item.name}：{best['date'][:10]} 已在{where}完成（HR），建议互认，避免重复检查检验"
        cancel: dict[str, Any] = {"label": "取消本次申请", "uuid": suggestion_id(result.check_id, CANCEL),
                                  "isRecommended": True}
        if result.request.order_ref:
            cancel["actions"] = [{"type": "delete", "description": f"取消重复的{result.item.name}申请，互认既往结果",
                                  "resourceId": [result.request.order_ref]}]
        out.append({
            "uuid": result.check_id,
            "summary": summary[:140],
            "indicator": "warning",
            "detail": _detail(result),
            "source": _SOURCE,
            "selectionBehavior": "at-most-one",
            "suggestions": [cancel, {"label": "仍然开立", "uuid": suggestion_id(result.check_id, KEEP),
                                     "isRecommended": False}],
            "overrideReasons": [{"system": REASON_SYSTEM, "code": code, "display": text}
                                for code, text in RETEST_REASONS.items()],
        })
    return {"cards": out}


def feedback_decisions(body: Any, clinician: str | None = None) -> list[Decision]:
    """The decisions a feedback request reports: ``accepted`` with 取消本次申请 → recognized; ``overridden``, or
    仍然开立 accepted → re-tested, with the ``overrideReason`` if given (recorded as unspecified otherwise)."""
    if not isinstance(body, dict) or not isinstance(body.get("feedback"), list) or not body["feedback"]:
        raise InvalidRequest("A feedback request is {\"feedback\": [{card, outcome, …}]}")
    out = []
    for number, entry in enumerate(body["feedback"], start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("card"), str) or not entry["card"]:
            raise InvalidRequest(f"feedback {number}: card (the card's uuid) is required")
        card, outcome = entry["card"][:36], entry.get("outcome")
        override = entry.get("overrideReason") if isinstance(entry.get("overrideReason"), dict) else {}
        coding = override.get("reason") if isinstance(override.get("reason"), dict) else {}
        reason = coding.get("code") if coding.get("system") in (None, REASON_SYSTEM) else None
        if reason is not None and not isinstance(reason, str):
            raise InvalidRequest(f"feedback {number}: overrideReason.reason.code must be a string")
        comment = _text(override.get("userComment"), 2000)
        accepted = {s.get("id") for s in _list(entry.get("acceptedSuggestions"),
                                               f"feedback {number}: acceptedSuggestions") if isinstance(s, dict)}
        if outcome == "overridden" or (outcome == "accepted" and suggestion_id(card, KEEP) in accepted):
            out.append(Decision(card, RETESTED, reason, comment, clinician, reason_required=False))
        elif outcome == "accepted":
            out.append(Decision(card, RECOGNIZED, None, comment, clinician))
        else:
            raise InvalidRequest(f"feedback {number}: outcome must be 'accepted' or 'overridden'")
    return out
