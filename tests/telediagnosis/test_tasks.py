"""The reading task's life: intake on both paths, FHIR Task, worklists, claims (one winner), release, shifts,
the report back to the site."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from hub.errors import BusinessRuleViolation, Conflict, Forbidden, HubError
from hub.fhir.access import Access
from hub.fhir.validation import validate_resource
from hub.store.database import Database
from hub.telediagnosis.tasks import STATE_SYSTEM
from tests.telediagnosis.support import (
    HEAD,
    LEAD,
    SITE,
    Clock,
    exam,
    order,
    put,
    region,
    search,
    study,
    task_of,
    task_resource,
)

REPORT = {"resourceType": "DiagnosticReport", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2", "display": "Chest CT"}]},
          "conclusion": "双肺未见明显异常。"}


def test_an_imaging_study_from_a_site_becomes_a_routed_fhir_task(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    put(database, order("o-1", priority="stat"))
    row = exam(tele, study("s-1", modality="MR", body_site=HEAD, order="o-1"))
    assert (row["state"], row["reader"], row["priority"], row["center_id"]) == ("assigned", "img-a", "stat",
                                                                                 "ks-imaging")
    assert row["deadline"] - row["created"] == timedelta(minutes=60)  # MR stat
    task = task_resource(tele, row["task_id"])
    validate_resource(task, "Task")  # what the hub writes is valid R4
    assert task["status"] == "ready" and task["intent"] == "order" and task["priority"] == "stat"
    assert task["focus"] == {"reference": "ImagingStudy/s-1"} and task["basedOn"] == [{"reference": "ServiceRequest/o-1"}]
    assert task["for"] == {"reference": "Patient/p-1"} and task["requester"] == {"reference": f"Organization/{SITE}"}
    assert task["owner"] == {"reference": "PractitionerRole/img-a"}
    assert task["restriction"]["period"]["end"].startswith("2026-12-07T03:00:00")  # MR stat: 60 minutes
    assert task["businessStatus"]["coding"][0] == {"system": STATE_SYSTEM, "code": "assigned", "display": "已分配"}
    assert {t["code"] for t in task["meta"]["tag"]} >= {SITE, "org-ks-imaging"}
    # the Task is FHIR: the worklist is a search too
    found = search(database, "Task", [("owner", "PractitionerRole/img-a"), ("status", "ready"), ("priority", "stat"),
                                      ("focus", "ImagingStudy/s-1")])
    assert [t["id"] for t in found] == [row["task_id"]]


def test_intake_is_idempotent_and_skips_what_is_not_sent_for_reading(database: Database) -> None:
    tele = region(database, Clock())
    first = exam(tele, study("s-1"))
    again = exam(tele, {**study("s-1"), "description": "再次发送"})  # the PACS sends the study again
    assert again["task_id"] == first["task_id"]
    put(database, study("lead-1", site=LEAD), study("registered", status="registered"), study("pt-1", modality="PT"))
    stats = tele.run_intake()
    assert (stats.exams, stats.created, stats.skipped) == (3, 0, 3)  # the lead hospital reads its own exams


def test_an_order_sent_to_the_center_is_read_there_and_its_study_joins_the_task(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, order("o-ct", modality="CT", priority="urgent", performer="org-ks-imaging"))
    assert row["focus"] == "ServiceRequest/o-ct" and row["center_id"] == "ks-imaging" and row["priority"] == "urgent"
    # the center does the exam: its ImagingStudy (based on the order) becomes the task's input, not a new task
    put(database, study("s-center", site="org-ks-imaging", order="o-ct"))
    stats = tele.run_intake()
    assert stats.attached == 1 and stats.created == 0
    inputs = [i.get("valueReference", {}).get("reference") for i in task_resource(tele, row["task_id"])["input"]]
    assert "ImagingStudy/s-center" in inputs


def test_twenty_readers_claiming_one_task_at_once_make_exactly_one_winner(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, study("s-1", modality="CT"))
    readers = ["img-a", "img-b", "img-chief", "img-off"] * 5
    barrier = threading.Barrier(len(readers))
    outcomes: list[str] = []

    def claim(reader: str) -> None:
        barrier.wait()
        try:
            tele.claim(row["task_id"], reader)
            outcomes.append(f"won:{reader}")
        except Conflict:
            outcomes.append("409")
        except HubError as exc:
            outcomes.append(f"error:{exc.message}")

    threads = [threading.Thread(target=claim, args=(r,)) for r in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [o for o in outcomes if o.startswith("won:")]
    # the winner's repeated calls answer the same claim again; everyone else is refused
    winner = won[0].split(":")[1]
    assert set(won) == {f"won:{winner}"} and len(won) == readers.count(winner)
    assert Counter(o for o in outcomes if not o.startswith("won:")) == {"409": len(readers) - len(won)}
    claimed = task_of(tele, "ImagingStudy/s-1")
    assert claimed["state"] == "claimed" and claimed["reader"] == winner
    task = task_resource(tele, row["task_id"])
    assert task["status"] == "in-progress" and task["owner"] == {"reference": f"PractitionerRole/{winner}"}
    loads = {r["reader"]: r["open_tasks"] for r in tele.readers()}
    assert sum(loads.values()) == 1 and loads[f"PractitionerRole/{winner}"] == 1


def test_claims_are_checked_against_the_center_and_qualification(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, study("s-1", modality="CT"))
    with pytest.raises(Forbidden):
        tele.claim(row["task_id"], "oth-a")  # a reader of another center
    with pytest.raises(BusinessRuleViolation, match="not qualified"):
        tele.claim(row["task_id"], "img-us")
    with pytest.raises(Forbidden):
        tele.claim(row["task_id"], "img-a", institutions=frozenset({"org-other-imaging"}))


def test_release_routes_the_task_to_another_reader(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, study("s-1", modality="CT"))
    assert row["reader"] == "img-a"
    tele.claim(row["task_id"], "img-a")
    released = tele.release(row["task_id"], "img-a", "需要会诊")
    assert released["state"] == "assigned" and released["reader"] == "PractitionerRole/img-b"
    notes = [n["text"] for n in task_resource(tele, row["task_id"])["note"]]
    assert notes[-1] == "李医生 退回：需要会诊，分配给 王医生"
    with pytest.raises(Conflict):
        tele.release(row["task_id"], "img-a")  # no longer theirs


def test_ending_a_shift_reroutes_unclaimed_work_and_starting_one_takes_the_queue(database: Database) -> None:
    tele = region(database, Clock())
    tele.set_shift("ecg-a", False)
    waiting = exam(tele, study("ecg-1", modality="ECG"))
    assert waiting["state"] == "queued" and waiting["reader"] is None  # nobody on shift at the ECG center
    assert task_resource(tele, waiting["task_id"])["owner"]["reference"] == "Organization/org-ks-ecg"
    started = tele.set_shift("ecg-a", True)
    assert started["tasks_moved"] == 1 and task_of(tele, "ImagingStudy/ecg-1")["reader"] == "ecg-a"
    ended = tele.set_shift("ecg-a", False)
    assert ended["tasks_moved"] == 1 and task_of(tele, "ImagingStudy/ecg-1")["state"] == "queued"


def test_the_report_completes_the_task_and_goes_back_to_the_site(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    row = exam(tele, study("s-1", modality="CT"))
    with pytest.raises(Conflict, match="claim it first"):
        tele.report(row["task_id"], "img-a", REPORT)
    tele.claim(row["task_id"], "img-a")
    clock.advance(25)
    with pytest.raises(BusinessRuleViolation):
        tele.report(row["task_id"], "img-a", {**REPORT, "status": "preliminary"})
    done = tele.report(row["task_id"], "img-a", REPORT)
    assert done["state"] == "completed" and done["report"].startswith("DiagnosticReport/")
    task = task_resource(tele, row["task_id"])
    assert task["status"] == "completed" and task["output"][0]["valueReference"]["reference"] == done["report"]
    assert task["executionPeriod"]["start"] < task["executionPeriod"]["end"]
    # the site reads the report as its own data: searchable by the site's institution-bound clients
    site = Access("site-client", {"*": frozenset("rs")}, frozenset({SITE}), frozenset({SITE}))
    [report] = search(database, "DiagnosticReport", [("subject", "Patient/p-1"), ("status", "final")], site)
    assert report["conclusion"] == "双肺未见明显异常。" and report["imagingStudy"] == [{"reference": "ImagingStudy/s-1"}]
    assert report["resultsInterpreter"][0]["reference"] == "PractitionerRole/img-a"
    assert {r["reader"]: r["open_tasks"] for r in tele.readers()}["PractitionerRole/img-a"] == 0
    assert tele.worklist(reader="img-a") == []


def test_claims_need_the_subspecialty_routing_needs(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, study("s-head", modality="MR", body_site=HEAD))
    with pytest.raises(BusinessRuleViolation, match="neuro"):
        tele.claim(row["task_id"], "img-b")  # reads MR, but not the head
    assert tele.claim(row["task_id"], "img-a")["state"] == "claimed"


def test_a_withdrawn_exam_cancels_its_open_task(database: Database) -> None:
    tele = region(database, Clock())
    row = exam(tele, study("s-1", modality="CT"))
    tele.claim(row["task_id"], "img-a")
    put(database, study("s-1", modality="CT", status="entered-in-error"))
    assert tele.run_intake().skipped == 0
    cancelled = task_of(tele, "ImagingStudy/s-1")
    assert cancelled["state"] == "cancelled" and cancelled["next_escalation"] is None
    task = task_resource(tele, row["task_id"])
    assert task["status"] == "cancelled" and task["note"][-1]["text"] == "检查已撤销（entered-in-error），任务取消"
    assert {r["reader"]: r["open_tasks"] for r in tele.readers()}["PractitionerRole/img-a"] == 0
    assert tele.worklist(reader="img-a") == []
