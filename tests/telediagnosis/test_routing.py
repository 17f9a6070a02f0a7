"""Routing: centers by modality and region, reader eligibility, STAT vs routine balancing, determinism."""

from __future__ import annotations

import pytest

from hub.errors import BusinessRuleViolation
from hub.store.database import Database
from hub.store.organizations import Institution, InstitutionTree
from hub.store.telediagnosis import ReaderLoad
from hub.telediagnosis.config import load_config, parse_text
from hub.telediagnosis.readers import Reader
from hub.telediagnosis.routing import Exam, route
from tests.telediagnosis.support import CONFIG, HEAD, OTHER_SITE, SITE, Clock, exam, region, study

TREE = InstitutionTree({org_id: Institution(org_id, org_id, kind, level, parent) for org_id, (kind, level, parent) in {
    "region-ks": ("region", "", ""), "consortium-ks": ("consortium", "", "region-ks"),
    "zone-1": ("zone", "", "consortium-ks"), SITE: ("institution", "chc", "zone-1"),
    "org-ks-imaging": ("institution", "secondary", "zone-1"), "org-ks-ecg": ("institution", "secondary", "zone-1"),
    "consortium-other": ("consortium", "", "region-ks"), OTHER_SITE: ("institution", "chc", "consortium-other"),
    "org-other-imaging": ("institution", "secondary", "consortium-other"),
    "region-far": ("region", "", ""), "consortium-far": ("consortium", "", "region-far"),
    "org-far-imaging": ("institution", "secondary", "consortium-far"),
}.items()})
CONFIGURED, _ = load_config(parse_text(CONFIG))
TEN_AM = 600


def reader(role_id: str, institution: str = "org-ks-imaging", modalities: str = "CT DX MR", *,
           subspecialties: str = "", capacity: int = 5, supervisor: bool = False) -> Reader:
    return Reader(role_id, role_id, institution, frozenset(modalities.split()), frozenset(subspecialties.split()),
                  capacity, supervisor)


def on(role_id: str, open_tasks: int = 0, assigned: int = 0) -> ReaderLoad:
    return ReaderLoad(role_id, True, None, open_tasks, assigned)


def test_stat_goes_to_the_least_instantaneous_load_and_routine_to_the_least_cumulative() -> None:
    readers = [reader("r1"), reader("r2")]
    # r1 has handled more this shift but has fewer open now; r2 the opposite
    loads = {"r1": on("r1", open_tasks=1, assigned=9), "r2": on("r2", open_tasks=4, assigned=2)}
    stat = route(Exam(SITE, "CT", "stat"), CONFIGURED, TREE, readers, loads, TEN_AM)
    routine = route(Exam(SITE, "CT", "routine"), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert stat.reader is not None and stat.reader.role_id == "r1"
    assert routine.reader is not None and routine.reader.role_id == "r2"
    assert stat.tier == routine.tier == "consortium" and stat.center.center_id == "ks-imaging"


def test_equal_inputs_give_equal_decisions_and_ties_go_to_readers_before_supervisors() -> None:
    readers = [reader("r-b"), reader("chief", supervisor=True), reader("r-a")]
    loads = {r.role_id: on(r.role_id) for r in readers}
    decisions = {route(Exam(SITE, "DX", "routine"), CONFIGURED, TREE, list(order), loads, TEN_AM).reader.role_id
                 for order in (readers, readers[::-1], readers[1:] + readers[:1])}
    assert decisions == {"r-a"}


def test_off_shift_unqualified_and_subspecialty_readers_are_passed_over_with_their_reasons() -> None:
    readers = [reader("off", subspecialties="neuro"), reader("us-only", modalities="US"), reader("general"),
               reader("neuro", subspecialties="neuro")]
    loads = {"off": ReaderLoad("off"), "us-only": on("us-only"), "general": on("general"),
             "neuro": on("neuro", open_tasks=4, assigned=4)}
    decision = route(Exam(SITE, "MR", "routine", HEAD), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert decision.reader is not None and decision.reader.role_id == "neuro"  # the only qualified one on shift
    reasons = {c["reader"]: c["reason"] for c in decision.considered}
    assert reasons == {"PractitionerRole/off": "off-shift", "PractitionerRole/us-only": "not-qualified",
                       "PractitionerRole/general": "needs-subspecialty:neuro", "PractitionerRole/neuro": None}


def test_routine_work_respects_capacity_but_an_emergency_still_finds_a_reader() -> None:
    readers = [reader("full", capacity=2)]
    loads = {"full": on("full", open_tasks=2, assigned=2)}
    routine = route(Exam(SITE, "CT", "routine"), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert routine.reader is None and routine.center.center_id == "ks-imaging"  # waits in the center's queue
    assert routine.considered[0]["reason"] == "at-capacity"
    stat = route(Exam(SITE, "CT", "stat"), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert stat.reader is not None and stat.reader.role_id == "full"


def test_own_consortium_first_then_the_region_never_another_region() -> None:
    readers = [reader("own"), reader("other", "org-other-imaging"), reader("far", "org-far-imaging")]
    loads = {"own": on("own", assigned=50), "other": on("other"), "far": on("far")}
    first = route(Exam(SITE, "CT", "routine"), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert first.reader.role_id == "own" and first.tier == "consortium"  # busier, but in the site's consortium
    loads["own"] = ReaderLoad("own")  # off shift: the region's center takes it, not the other region's
    second = route(Exam(SITE, "CT", "routine"), CONFIGURED, TREE, readers, loads, TEN_AM)
    assert second.reader.role_id == "other" and second.tier == "region" and second.center.center_id == "other-imaging"
    assert "PractitionerRole/far" not in {c["reader"] for c in second.considered}


def test_a_closed_center_takes_no_work_and_a_modality_nobody_reads_is_refused() -> None:
    config, _ = load_config(parse_text(CONFIG.replace("modalities: [ECG]}", "modalities: [ECG], hours: [08:00-17:00]}")))
    readers = [reader("ecg", "org-ks-ecg", "ECG")]
    night = route(Exam(SITE, "ECG", "stat"), config, TREE, readers, {"ecg": on("ecg")}, 22 * 60)
    assert night.reader is None and night.considered[0]["reason"] == "center-closed"
    day = route(Exam(SITE, "ECG", "stat"), config, TREE, readers, {"ecg": on("ecg")}, 9 * 60)
    assert day.reader is not None
    with pytest.raises(BusinessRuleViolation, match="No reading center of the site's region reads PT"):
        route(Exam(SITE, "PT", "routine"), config, TREE, readers, {}, TEN_AM)


def test_routing_through_the_store_balances_consecutive_exams(database: Database) -> None:
    tele = region(database, Clock())
    readers = [exam(tele, study(f"s{n}", modality="CT"))["reader"] for n in range(6)]
    # img-chief (supervisor), img-a and img-b read CT: routine work spreads over the shift, readers first
    assert readers == ["img-a", "img-b", "img-chief", "img-a", "img-b", "img-chief"]
    stat = tele.route_preview(SITE, "CT", "stat")
    assert stat.reader is not None and stat.reader.role_id == "img-a"  # all have 2 open: the tie order
    assert tele.route_preview(OTHER_SITE, "CT").center.center_id == "other-imaging"
