"""The SLA sweep with a clock the test moves: claim timeout, 50 % reassignment or reminder, 100 % escalation,
recorded on the Task; the APScheduler job that runs it."""

from __future__ import annotations

import threading

import pytest

from hub.errors import Conflict
from hub.store.database import Database
from hub.telediagnosis.sla import SweepStats, TeleWorkers, sweep
from tests.telediagnosis.support import CONFIG, Clock, exam, order, put, region, search, study, task_of, task_resource


def _business(tele, task_id: str) -> str:  # type: ignore[no-untyped-def]
    return task_resource(tele, task_id)["businessStatus"]["coding"][0]["code"]


def test_a_claim_not_reported_in_time_returns_to_the_queue(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    row = exam(tele, study("s-1", modality="CT"))
    tele.claim(row["task_id"], "img-a")
    clock.advance(29)
    assert sweep(tele).claims_expired == 0
    clock.advance(2)  # 31 minutes after the claim (timeout 30)
    assert sweep(tele).claims_expired == 1
    back = task_of(tele, "ImagingStudy/s-1")
    assert back["state"] == "assigned" and back["reader"] == "img-b" and back["claim_expires"] is None
    task = task_resource(tele, row["task_id"])
    assert task["status"] == "ready" and "executionPeriod" not in task
    assert task["note"][-1]["text"] == "认领后 30 分钟未出报告，退回队列，分配给 王医生"
    loads = {r["reader"]: r["open_tasks"] for r in tele.readers()}
    assert loads["PractitionerRole/img-a"] == 0 and loads["PractitionerRole/img-b"] == 1


def test_at_half_the_sla_an_unclaimed_task_is_reassigned_and_at_the_deadline_escalated(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    put(database, order("o-1", priority="stat"))
    row = exam(tele, study("s-1", modality="CT", order="o-1"))  # CT stat: 60 minutes
    assert row["reader"] == "img-a"
    clock.advance(29)
    assert sweep(tele) == SweepStats()
    clock.advance(1)  # 30 minutes: half the SLA, still not claimed
    stats = sweep(tele)
    assert (stats.warned, stats.reassigned) == (1, 1)
    warned = task_of(tele, "ImagingStudy/s-1")
    assert warned["reader"] == "img-b" and warned["sla_level"] == 1
    assert _business(tele, row["task_id"]) == "warned"
    assert task_resource(tele, row["task_id"])["note"][-1]["text"] == "SLA 已过 50%（60 分钟）仍未认领，改派给 王医生"
    assert sweep(tele) == SweepStats()  # nothing more until the deadline
    clock.advance(1)
    tele.claim(row["task_id"], "img-b")
    clock.advance(29)  # the deadline (the claim, 29 minutes old, still holds)
    assert sweep(tele).escalated == 1
    escalated = task_of(tele, "ImagingStudy/s-1")
    assert escalated["sla_level"] == 2 and escalated["next_escalation"] is None and escalated["state"] == "claimed"
    task = task_resource(tele, row["task_id"])
    assert task["businessStatus"]["coding"][0]["code"] == "escalated" and task["status"] == "in-progress"
    assert task["note"][-1]["text"] == "已超过 SLA（60 分钟）未出报告，升级至中心主任 周主任"
    # the supervisor sees it on their worklist; a Subscription on businessStatus would be told
    assert [t["task"] for t in tele.worklist(reader="img-chief") if t["sla_level"] == 2] == [f"Task/{row['task_id']}"]
    assert [t["id"] for t in search(database, "Task", [("business-status", "escalated")])] == [row["task_id"]]
    assert sweep(tele) == SweepStats()


def test_a_claimed_task_at_half_its_sla_gets_a_reminder_not_a_new_reader(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    put(database, order("o-1", priority="stat"))
    row = exam(tele, study("s-1", modality="CT", order="o-1"))  # CT stat: 60 minutes, warned at 30
    clock.advance(5)
    tele.claim(row["task_id"], "img-a")
    clock.advance(25)
    stats = sweep(tele)
    assert (stats.warned, stats.reassigned, stats.claims_expired) == (1, 0, 0)
    after = task_of(tele, "ImagingStudy/s-1")
    assert (after["reader"], after["state"], after["sla_level"]) == ("img-a", "claimed", 1)
    assert _business(tele, row["task_id"]) == "warned"
    assert task_resource(tele, row["task_id"])["note"][-1]["text"] == "SLA 已过 50%（60 分钟），提醒尽快出报告"


def test_the_scheduler_runs_the_sweep_in_the_background(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    row = exam(tele, study("s-1", modality="CT"))
    tele.claim(row["task_id"], "img-a")
    clock.advance(31)
    swept = threading.Event()
    results: list[SweepStats] = []

    def seen(stats: SweepStats) -> None:
        results.append(stats)
        swept.set()

    workers = TeleWorkers(tele, sweep_seconds=1, on_sweep=seen)
    workers.start()
    try:
        assert swept.wait(10), "the APScheduler job did not run"
    finally:
        workers.stop()
    assert results[0].claims_expired == 1 and task_of(tele, "ImagingStudy/s-1")["state"] == "assigned"


def test_the_background_intake_takes_in_new_exams(database: Database) -> None:
    tele = region(database, Clock())
    workers = TeleWorkers(tele, sweep_seconds=3600)
    workers.start()
    try:
        put(database, study("s-bg", modality="US"))
        workers.intake.wake()
        for _ in range(100):
            with tele.step() as step:
                if step.store.task_for(["ImagingStudy/s-bg"]) is not None:
                    break
            threading.Event().wait(0.05)
    finally:
        workers.stop()
    assert task_of(tele, "ImagingStudy/s-bg")["reader"] == "img-us"


def test_a_report_after_the_claim_timed_out_is_refused_and_nothing_of_it_is_kept(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    row = exam(tele, study("s-1", modality="CT"))
    tele.claim(row["task_id"], "img-a")
    clock.advance(31)
    sweep(tele)
    tele.claim(row["task_id"], "img-b")  # the task went to another reader, who claimed it
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "胸部CT"}, "conclusion": "晚了"}
    with pytest.raises(Conflict, match="not claimed by PractitionerRole/img-a"):
        tele.report(row["task_id"], "img-a", report)
    with pytest.raises(Conflict):
        tele.release(row["task_id"], "img-a")
    assert search(database, "DiagnosticReport", []) == []
    assert task_of(tele, "ImagingStudy/s-1")["reader"] == "img-b"


def test_tasks_a_center_no_longer_reads_wait_in_its_queue_and_do_not_stop_the_sweep(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    us = exam(tele, study("s-us", modality="US"))
    ct = exam(tele, study("s-ct", modality="CT"))
    tele.claim(us["task_id"], "img-us")
    tele.claim(ct["task_id"], "img-a")
    tele.load_config(CONFIG.replace("modalities: [CT, DX, MR, US]", "modalities: [CT, DX, MR]"), "test")
    clock.advance(31)
    stats = sweep(tele)  # both claims expired: the CT task goes to another reader, the US one to the queue
    assert stats.claims_expired == 2
    assert task_of(tele, "ImagingStudy/s-us")["state"] == "queued"
    assert task_of(tele, "ImagingStudy/s-ct")["reader"] == "img-b"
    before = task_resource(tele, us["task_id"])["meta"]["versionId"]
    sweep(tele)  # nobody can take the queued US task: it is left as it is, no new version, no notification
    assert task_resource(tele, us["task_id"])["meta"]["versionId"] == before
    tele.claim(us["task_id"], "img-us")  # a qualified reader of its center may still claim it
    tele.set_shift("img-us", False)


def test_a_task_whose_fhir_task_was_deleted_is_cancelled_and_the_others_go_on(database: Database) -> None:
    clock = Clock()
    tele = region(database, clock)
    gone = exam(tele, study("s-gone", modality="CT"))
    kept = exam(tele, study("s-kept", modality="DX"))
    tele.claim(gone["task_id"], "img-a")
    tele.claim(kept["task_id"], "img-b")
    with database.fhir_service(write=True) as service:
        service.delete("Task", gone["task_id"])
    clock.advance(31)
    sweep(tele)
    assert task_of(tele, "ImagingStudy/s-gone")["state"] == "cancelled"
    assert task_of(tele, "ImagingStudy/s-kept")["state"] == "assigned"
    assert task_resource(tele, kept["task_id"])["status"] == "ready"
    assert sum(r["open_tasks"] for r in tele.readers()) == 1  # the loads count the kept task only
