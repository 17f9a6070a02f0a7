"""Benchmark: tele-diagnosis routing decisions (target <= 5 ms) and the SLA sweep over 100,000 open tasks
(target <= 1 s on PostgreSQL).

Stores, in a fresh database and in-process: the sample 昆山 roster and tele-diagnosis configuration (an
imaging center and an ECG center), a roster of 60 readers (45 imaging, 15 ECG; 4 in 5 on shift, every
qualification mix), then ``--tasks`` open reading tasks (default 100,000: a Task resource with every
search-index row, and its routing row, as intake writes them; their readers' loads counted), spread over
the 27 sites and both centers, created in the 20 hours before the clock, none yet due for an SLA step.

Then, single-threaded:

1. **Routing decision**: ``Step.decide`` for 2,000 random exams (site, modality, priority, body site): the
   reader loads are read from the database for each; the configuration, tree and readers come from their
   caches (as in the running hub). Also the whole intake of one exam (``Telediagnosis.create``: decision,
   routing row, loads, Task written, commit) for 500 exams.
2. **SLA sweep**: ``sweep`` with no task due, then with 100 and 1,000 tasks due (their next SLA step moved
   into the past: warnings that reassign or remind, escalations), each a fresh sweep over all open tasks.

Run by hand::

    .venv/bin/python bench/bench_telediagnosis.py --database postgresql
    .venv/bin/python bench/bench_telediagnosis.py --database sqlite
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import fresh_database_url
from sqlalchemy import select, update

from hub.config import Settings
from hub.registry.roster import apply_roster, load_roster
from hub.store.database import Database
from hub.store.migrate import upgrade
from hub.store.organizations import load_tree
from hub.store.tele_tables import tele_task
from hub.telediagnosis.exams import ExamFacts
from hub.telediagnosis.routing import Exam
from hub.telediagnosis.service import Telediagnosis
from hub.telediagnosis.sla import sweep

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "hub" / "samples"
SEED = 20261206
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)  # 10:00 in 昆山
BATCH = 1000
IMAGING = ("CT", "MR", "DX", "US", "MG")
PRIORITIES = ("routine",) * 7 + ("urgent", "asap", "stat")
BODY_SITES = ("69536005", "51185008", "818981001", None)


class Clock:
    """The benchmark's clock (fixed, moved by hand)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def readers_yaml(rng: random.Random) -> str:
    lines = ["readers:"]
    for n in range(60):
        imaging = n < 45
        center = "ks-imaging" if imaging else "ks-ecg"
        modalities = rng.sample(IMAGING, rng.randint(2, 5)) if imaging else ["ECG"]
        neuro = ", subspecialties: [neuro]" if imaging and rng.random() < 0.3 else ""
        lines.append(f"  - {{id: pr-bench-{n:02d}, name: 医师{n:02d}, center: {center}, "
                     f"modalities: [{', '.join(modalities)}]{neuro}, capacity: 100000, on_shift: {n % 5 != 0}}}")
    return "\n".join(lines) + "\n"


def sites(tele: Telediagnosis) -> list[str]:
    """The institutions whose exams are read centrally (primary, chc and township levels)."""
    with tele.database.unit_of_work(write=False) as repository:
        tree = load_tree(repository)
    return sorted(org.org_id for org in tree.nodes.values()
                  if org.kind == "institution" and org.level in ("primary", "chc", "township"))


def random_exam(rng: random.Random, site_ids: list[str]) -> Exam:
    modality = "ECG" if rng.random() < 0.25 else rng.choice(IMAGING)
    return Exam(rng.choice(site_ids), modality, rng.choice(PRIORITIES), rng.choice(BODY_SITES))


def load_tasks(tele: Telediagnosis, count: int, site_ids: list[str], rng: random.Random) -> float:
    """Store ``count`` open tasks as intake would (routed one by one within each batch); seconds taken."""
    started = time.perf_counter()
    created = 0
    while created < count:
        size = min(BATCH, count - created)
        with tele.step() as step:
            for _ in range(size):
                exam = random_exam(rng, site_ids)
                step.now = NOW - timedelta(minutes=rng.randint(0, 20 * 60))
                facts = ExamFacts(f"ImagingStudy/bench-{uuid.uuid4()}", None, f"Patient/bench-{rng.randint(1, 50000)}",
                                  exam.site, exam.modality, exam.body_site, exam.priority)
                _create_not_due(tele, step, facts)
        created += size
        if created % 20000 == 0:
            print(f"  {created:,} tasks stored ({created / (time.perf_counter() - started):,.0f}/s)")
    return time.perf_counter() - started


def _create_not_due(tele: Telediagnosis, step: Any, facts: ExamFacts) -> None:
    row = tele.create(step, facts)
    # none due yet: the sweep finds nothing until the benchmark moves some steps into the past
    step.store.change(row["task_id"], (row["state"],), {"next_escalation": NOW + timedelta(days=30)})


def time_decisions(tele: Telediagnosis, site_ids: list[str], rng: random.Random, count: int = 2000) -> list[float]:
    timings = []
    with tele.step() as step:
        for _ in range(100):
            step.decide(random_exam(rng, site_ids))
        for _ in range(count):
            exam = random_exam(rng, site_ids)
            started = time.perf_counter()
            step.decide(exam)
            timings.append((time.perf_counter() - started) * 1000)
    return timings


def time_intake(tele: Telediagnosis, site_ids: list[str], rng: random.Random, count: int = 500) -> list[float]:
    timings = []
    for n in range(count):
        exam = random_exam(rng, site_ids)
        facts = ExamFacts(f"ImagingStudy/bench-one-{n}-{uuid.uuid4()}", None, "Patient/bench-1", exam.site,
                          exam.modality, exam.body_site, exam.priority)
        started = time.perf_counter()
        with tele.step() as step:
            _create_not_due(tele, step, facts)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def make_due(database: Database, count: int, rng: random.Random) -> None:
    """Move the next SLA step of ``count`` random open tasks into the past (half of them past the deadline)."""
    with database.connection(write=True) as connection:
        ids = [r.task_id for r in connection.execute(select(tele_task.c.task_id).where(
            tele_task.c.state.in_(["assigned", "queued"])).order_by(tele_task.c.task_id).limit(20000))]
        for n, task_id in enumerate(rng.sample(ids, count)):
            values: dict[str, Any] = {"next_escalation": NOW - timedelta(minutes=1)}
            if n % 2:
                values["deadline"] = NOW - timedelta(minutes=1)
            connection.execute(update(tele_task).where(tele_task.c.task_id == task_id).values(**values))


def stats(label: str, timings: list[float]) -> str:
    ordered = sorted(timings)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return (f"| {label} | {len(ordered):,} | {at(0.5):.2f} ms | {at(0.95):.2f} ms | {at(0.99):.2f} ms | "
            f"{ordered[-1]:.2f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(SEED)
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-tele-"))
    url = fresh_database_url(args.database, workdir, "hub_bench_tele")
    database = Database(Settings(database_url=url, key_dir=str(workdir / "keys")))
    upgrade(database.engine)
    with database.fhir_service(write=True) as service:
        apply_roster(service, load_roster(SAMPLES / "kunshan-roster.yaml"))
    clock = Clock()
    tele = Telediagnosis(database, clock=clock)
    tele.load_config((SAMPLES / "telediagnosis.yaml").read_bytes(), "bench")
    tele.load_readers(readers_yaml(rng))
    site_ids = sites(tele)
    print(f"{args.database}: {len(site_ids)} sites, 60 readers; storing {args.tasks:,} open tasks …")
    seconds = load_tasks(tele, args.tasks, site_ids, rng)
    print(f"stored {args.tasks:,} tasks in {seconds:.0f} s ({args.tasks / seconds:,.0f} tasks/s, Task resource "
          "and routing row each)")
    database.refresh_statistics(force=True)
    print("| what | count | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|---:|")
    print(stats("routing decision (Step.decide)", time_decisions(tele, site_ids, rng)))
    print(stats("intake of one exam (decide + Task + row + commit)", time_intake(tele, site_ids, rng)))
    with database.connection(write=False) as connection:
        open_tasks = connection.execute(select(tele_task.c.task_id).where(
            tele_task.c.state.in_(["assigned", "queued", "claimed"]))).all()
    print(f"SLA sweep over {len(open_tasks):,} open tasks:")
    for due in (0, 100, 1000):
        make_due(database, due, rng)
        started = time.perf_counter()
        done = sweep(tele)
        elapsed = time.perf_counter() - started
        print(f"| {due:,} due | {elapsed * 1000:,.0f} ms | {done.as_dict()} |")


if __name__ == "__main__":
    main()
