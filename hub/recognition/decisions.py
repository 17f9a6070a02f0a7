"""Decisions on checks (recognized, or re-tested for one of the six national reasons) and the figures.

国卫医发〔2022〕6号 lets the receiving doctor re-test despite a recognizable result for six reasons,
and the reason must be recorded. The figures the dashboards show are computed from the recorded
checks: recognition rate (recognized / eligible orders: those with a recognizable prior result),
re-tests by reason, avoided repeat tests and their cost (the catalogue's per-item price).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from hub.errors import BusinessRuleViolation, Forbidden, InvalidRequest, NotFound
from hub.recognition.rules import Rules
from hub.store.recognition import RecognitionStore

RECOGNIZED, RETESTED = "recognized", "retested"
DECISIONS = {RECOGNIZED: "互认（取消重复检查检验）", RETESTED: "仍然开立（重新检查检验）"}
#: The six reasons for re-testing (《医疗机构检查检验结果互认管理办法》 第二十条).
RETEST_REASONS = {
    "condition-changed": "病情变化",
    "rapid-change": "检查检验结果在疾病进展中变化快",
    "critical-decision": "对疾病诊疗意义重大（如手术、输血前）",
    "emergency": "急诊、急救等抢救患者",
    "forensic": "司法、伤残、病退等鉴定",
    "other": "其他情形",
}
REASON_SYSTEM = "urn:hub:recognition:retest-reason"
PERIODS = ("day", "month", "year", "total")
GROUPS = ("institution", "consortium", "region")


#: A re-test the ordering system reported without its reason (CDS Hooks feedback need not carry one): kept, and
#: counted apart, rather than lost.
UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class Decision:
    """A decision taken on a check."""

    check_id: str
    decision: str
    reason: str | None = None
    comment: str | None = None
    #: The clinician as the ordering system names them (CDS Hooks ``userId``).
    clinician: str | None = None
    #: False for what an ordering system reports happened (feedback): a missing reason is recorded as such.
    reason_required: bool = True


def decide(store: RecognitionStore, wanted: Decision, actor: str, institutions: frozenset[str] | None,
           now: Any) -> dict[str, Any]:
    """Record the decision on a check; ``institutions`` (None: any) are those the decider acts for."""
    check_id, decision, reason, comment = wanted.check_id, wanted.decision, wanted.reason, wanted.comment
    check = store.check(check_id)
    if check is None:
        raise NotFound(f"No recognition check {check_id}")
    if institutions is not None and check["institution"] not in institutions:
        raise Forbidden("This client may not decide on another institution's orders")
    if decision not in DECISIONS:
        raise InvalidRequest(f"decision must be one of {', '.join(DECISIONS)}")
    if not check["recognizable"]:
        raise BusinessRuleViolation("This order had no recognizable prior result: there is nothing to decide")
    comment = (comment or "").strip() or None
    if comment is not None and len(comment) > 2000:
        raise InvalidRequest("The comment is limited to 2000 characters")
    if decision == RETESTED and reason is None and not wanted.reason_required:
        reason = UNSPECIFIED
    elif decision == RETESTED:
        if reason not in RETEST_REASONS:
            raise InvalidRequest("Re-testing despite a recognizable result needs one of the six reasons: "
                                 + ", ".join(f"{code} ({text})" for code, text in RETEST_REASONS.items()))
        if reason == "other" and comment is None:
            raise InvalidRequest("The reason 'other' (其他情形) needs a comment saying why")
    else:
        reason = None
    clinician = (wanted.clinician or "")[:200] or None
    store.decide(check_id, decision, reason, comment, actor, clinician, now)
    return {"check": check_id, "decision": decision, "reason": reason, "comment": comment, "clinician": clinician}


def _period(day: str, period: str) -> str:
    return {"day": day, "month": day[:7], "year": day[:4], "total": "total"}[period]


def figures(store: RecognitionStore, rules: Rules, first: date, last: date, *, period: str = "month",
            group: str = "institution", institutions: frozenset[str] | None = None) -> dict[str, Any]:
    """The recognition figures per ``group`` (ordering institution, its consortium or region) and ``period``."""
    if period not in PERIODS:
        raise InvalidRequest(f"period must be one of {', '.join(PERIODS)}")
    if group not in GROUPS:
        raise InvalidRequest(f"by must be one of {', '.join(GROUPS)}")
    if last < first:
        raise InvalidRequest("'to' is before 'from'")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    by_item: dict[tuple[str, str], dict[str, dict[str, int]]] = defaultdict(dict)
    for total in store.day_totals(first.isoformat(), last.isoformat(), institutions):
        unit = total["institution"] if group == "institution" else (rules.ancestor(total["institution"], group)
                                                                     or "")
        key = (_period(total["check_day"], period), unit)
        row = rows.setdefault(key, {"checks": 0, "eligible": 0, "recognized": 0, "retested": 0, "undecided": 0,
                                    "retests_by_reason": {code: 0 for code in (*RETEST_REASONS, UNSPECIFIED)}, "avoided_fen": 0})
        count = int(total["checks"])
        row["checks"] += count
        if total["eligible"]:
            row["eligible"] += count
            decision = total["decision"]
            if decision == RECOGNIZED:
                row["recognized"] += count
                row["avoided_fen"] += int(total["price_fen"] or 0)
            elif decision == RETESTED:
                row["retested"] += count
                row["retests_by_reason"][total["reason"]] = row["retests_by_reason"].get(total["reason"], 0) + count
            else:
                row["undecided"] += count
            item = by_item[key].setdefault(total["item_id"] or "", {"eligible": 0, "recognized": 0})
            item["eligible"] += count
            item["recognized"] += count if decision == RECOGNIZED else 0
    out = []
    for (label, unit), row in sorted(rows.items()):
        org = rules.institutions.get(unit)
        avoided = row.pop("avoided_fen")
        out.append({"period": label, group: unit or None, "name": org.name if org is not None else None, **row,
                    "recognition_rate": round(row["recognized"] / row["eligible"], 4) if row["eligible"] else None,
                    "avoided_tests": row["recognized"], "avoided_cost": f"{avoided / 100:.2f}",
                    "items": by_item[(label, unit)]})
    return {"from": first.isoformat(), "to": last.isoformat(), "period": period, "by": group, "rows": out}
