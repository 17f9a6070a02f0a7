"""The demo's synthetic consortium: reproducible, realistic where it should be, dirty exactly where it says."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import yaml

from hub.privacy.citizen_id import citizen_id_problem, upgrade_to_18
from hub.synthetic.consortium import (
    BAD_BIRTH,
    ID_MISTYPED,
    LEAD,
    TCM,
    ConsortiumGenerator,
    ConsortiumPlan,
    Registration,
)

ROSTER = Path(__file__).resolve().parents[1] / "hub" / "samples" / "kunshan-roster.yaml"
TODAY = date(2026, 12, 6)


def _plan(seed: int = 7, patients: int = 800) -> ConsortiumPlan:
    entries = yaml.safe_load(ROSTER.read_text(encoding="utf-8"))["organizations"]
    institutions = [(e["id"], e.get("level", "")) for e in entries if e.get("kind") == "institution"]
    return ConsortiumGenerator(institutions, seed, TODAY).plan(patients)


def test_the_same_seed_and_day_give_the_same_consortium() -> None:
    assert list(_plan().rows()) == list(_plan().rows())
    assert list(_plan(seed=8).rows()) != list(_plan().rows())


def test_residents_have_valid_id_numbers_and_registrations_fail_only_where_marked() -> None:
    plan = _plan()
    assert all(citizen_id_problem(person.id_number, TODAY) is None for person in plan.persons)
    assert len({person.id_number for person in plan.persons}) == len(plan.persons)
    registrations: list[Registration] = [row for _org, row in plan.rows() if isinstance(row, Registration)]
    marked = [r for r in registrations if r.problem]
    assert 0 < len(marked) < len(registrations) * 0.05
    for row in registrations:
        if row.problem is None and row.id_number:  # a clean row's number is the person's (maybe the old form)
            person = plan.persons[row.label]
            assert person.id_number in (row.id_number, upgrade_to_18(row.id_number))
        if row.problem == ID_MISTYPED:
            assert citizen_id_problem(row.id_number or "", TODAY) is not None
        if row.problem == BAD_BIRTH:
            assert row.birth and row.birth.endswith("02-30")


def test_everything_happened_before_today_and_at_the_right_places() -> None:
    plan = _plan()
    midnight = datetime.combine(TODAY, datetime.min.time())
    for _org, row in plan.rows():
        for name in ("start", "at", "collected", "reported", "updated"):
            moment = getattr(row, name, None)
            if isinstance(moment, datetime):
                assert moment < midnight, (name, row)
    born = {org: {r.key: plan.persons[r.label].birth for r in plan.institutions[org].registrations}
            for org in plan.institutions}
    for org, data in plan.institutions.items():  # every event names a patient of its own institution, born by then
        for group in (data.visits, data.labs, data.exams, data.referrals, data.follow_ups):
            for row in group:
                moment = getattr(row, "start", None) or getattr(row, "collected", None) or row.at
                assert moment.date() >= born[org][row.patient], (org, row)
        for registration in data.registrations:
            assert registration.updated.date() >= plan.persons[registration.label].birth
            if registration.birth and registration.problem is None:
                assert date.fromisoformat(registration.birth) < TODAY
    sites_with_exams = {org for org, data in plan.institutions.items() if data.exams}
    assert sites_with_exams and LEAD not in sites_with_exams and TCM not in sites_with_exams
    assert plan.typo_pairs and plan.recent_labs
    for lead_key, tcm_key in plan.typo_pairs:  # one person, typed at two hospitals with a homophone
        lead = next(r for r in plan.institutions[LEAD].registrations if r.key == lead_key)
        tcm = next(r for r in plan.institutions[TCM].registrations if r.key == tcm_key)
        assert lead.label == tcm.label and lead.name != tcm.name and len(lead.name) == len(tcm.name)
        assert tcm.id_number is None and lead.id_number
