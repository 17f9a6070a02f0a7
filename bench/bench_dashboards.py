"""Benchmark: evaluating the dashboards' indicators (target: <= 200 ms per indicator at 1,000,000 resources on
PostgreSQL).

Stores, in a fresh database and in-process (every search-index row and the dashboards' change queue, as ingest
writes them), the sample 昆山 roster (32 institutions) and N resources of one year (2026), as a source system sends
them (``meta.source``, local codes, 80–90 % of them mapped to a standard code):

- 10 % Patients; 40 % visits (Encounter AMB 85 %, EMER 10 %, IMP 5 %; 60 % at primary-level institutions);
- 10 % chronic-disease follow-ups (hypertension 70 %, diabetes 30 %) of a quarter of the patients, each with its
  blood-pressure panel or fasting glucose (another 10 %); 2 % referrals up and down; the rest lab results;

then reads the queue into facts (timed), links one patient in ten to another under one EMPI person, and adds
100,000 recognition checks and 50,000 reading tasks of the year (rows, as those services record them).

Then times, single-threaded and in-process (no HTTP), ``Dashboards.evaluate`` of each indicator for the year and
a quarter, for the whole region, the consortium, a zone and an institution (10 runs each after a warm-up), and the
page's call (all seven for one unit). Run by hand::

    .venv/bin/python bench/bench_dashboards.py --database postgresql                 # 1,000,000 resources
    .venv/bin/python bench/bench_dashboards.py --database postgresql --reuse         # time the stored data again
    .venv/bin/python bench/bench_dashboards.py --database postgresql --reuse --rebuild-facts  # and the facts
    .venv/bin/python bench/bench_dashboards.py --database sqlite --resources 200000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import existing_database_url, fresh_database_url, store_resources
from sqlalchemy import insert

from hub.config import Settings
from hub.dashboards.definitions import measures
from hub.dashboards.service import Dashboards
from hub.fhir.access import INSTITUTION_TAG
from hub.registry.roster import apply_roster, load_roster
from hub.store.dashboard_tables import dash_fact, dash_total
from hub.store.database import Database
from hub.store.migrate import upgrade
from hub.store.service_tables import recognition_check
from hub.store.tables import empi_person, empi_record
from hub.store.tele_tables import tele_task

DATABASE = "hub_bench_dashboards"
ROSTER = Path(__file__).resolve().parent.parent / "hub" / "samples" / "kunshan-roster.yaml"
SEED = 20261206
BATCH = 2000
LOCAL = timezone(timedelta(hours=8))
YEAR_START = datetime(2026, 1, 1, tzinfo=LOCAL)
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LOINC = "http://loinc.org"
PRIMARY = ("chc", "township", "primary")


def _institutions() -> tuple[list[str], list[str], dict[str, str]]:
    rows = load_roster(ROSTER)
    levels = {}
    for row in rows:
        for concept in row.get("type") or ():
            for coding in concept.get("coding") or ():
                if coding.get("system") == "urn:hub:institution-level":
                    levels[row["id"]] = coding["code"]
    primary = sorted(i for i, level in levels.items() if level in PRIMARY)
    hospitals = sorted(i for i, level in levels.items() if level not in PRIMARY)
    return primary, hospitals, levels


def _when(rng: random.Random) -> str:
    return (YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))).isoformat()


def _meta(institution: str) -> dict[str, Any]:
    return {"source": f"urn:hub:source:src-{institution}", "tag": [{"system": INSTITUTION_TAG, "code": institution}]}


def _coded(rng: random.Random, institution: str, element: str, code: str, standard: tuple[str, str],
           mapped: float) -> dict[str, Any]:
    codings = [{"system": f"urn:hub:code:src-{institution}:{element}", "code": code}]
    if rng.random() < mapped:
        codings.append({"system": standard[0], "code": standard[1]})
    return {"coding": codings}


def resources(total: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The N resources (deterministic)."""
    rng = random.Random(SEED)
    primary, hospitals, _levels = _institutions()
    patients = total // 10
    home = {n: rng.choice(primary) for n in range(patients)}
    for n in range(patients):
        yield "Patient", f"p{n}", {"resourceType": "Patient", "id": f"p{n}", "meta": _meta(home[n]),
                                   "gender": rng.choice(("male", "female")), "birthDate": f"19{rng.randrange(30, 99)}"}
    for n in range(total * 4 // 10):
        patient = rng.randrange(patients)
        place = home[patient] if rng.random() < 0.6 else rng.choice(hospitals)
        visit_class = rng.choices(("AMB", "EMER", "IMP"), (85, 10, 5))[0]
        yield "Encounter", f"v{n}", {
            "resourceType": "Encounter", "id": f"v{n}", "meta": _meta(place), "status": "finished",
            "class": {"system": ACT, "code": visit_class}, "subject": {"reference": f"Patient/p{patient}"},
            "serviceType": _coded(rng, place, "department", f"D{rng.randrange(40):02d}", ("urn:hub:dept", "01"), 0.8),
            "period": {"start": _when(rng)}, "serviceProvider": {"reference": f"Organization/{place}"}}
    chronic = list(range(0, patients, 4))
    follow_ups = total // 10
    for n in range(follow_ups):
        patient = chronic[n % len(chronic)]
        program = "hypertension" if patient % 10 < 7 else "diabetes"
        when = _when(rng)
        yield "Encounter", f"f{n}", {
            "resourceType": "Encounter", "id": f"f{n}", "meta": _meta(home[patient]), "status": "finished",
            "class": {"system": ACT, "code": "AMB"}, "subject": {"reference": f"Patient/p{patient}"},
            "type": [{"coding": [{"system": "urn:hub:follow-up-program", "code": program}]}],
            "period": {"start": when}, "serviceProvider": {"reference": f"Organization/{home[patient]}"}}
        base = {"resourceType": "Observation", "id": f"m{n}", "meta": _meta(home[patient]), "status": "final",
                "subject": {"reference": f"Patient/p{patient}"}, "encounter": {"reference": f"Encounter/f{n}"},
                "effectiveDateTime": when}
        if program == "hypertension":
            yield "Observation", f"m{n}", {**base, "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
                                           "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": rng.randrange(110, 170), "unit": "mmHg"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": rng.randrange(65, 105), "unit": "mmHg"}}]}
        else:
            yield "Observation", f"m{n}", {**base, "code": {"coding": [{"system": LOINC, "code": "14771-0"}]},
                                           "valueQuantity": {"value": round(rng.uniform(4.5, 11), 1), "unit": "mmol/L"}}
    for n in range(total * 2 // 100):
        patient = rng.randrange(patients)
        up = rng.random() < 0.6
        source, target = (home[patient], rng.choice(hospitals)) if up else (rng.choice(hospitals), home[patient])
        yield "ServiceRequest", f"r{n}", {
            "resourceType": "ServiceRequest", "id": f"r{n}", "meta": _meta(source),
            "status": rng.choice(("active", "completed", "completed")), "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
            "code": {"coding": [{"system": "urn:hub:referral-direction", "code": "up" if up else "down"}]},
            "subject": {"reference": f"Patient/p{patient}"}, "authoredOn": _when(rng)[:10],
            "requester": {"reference": f"Organization/{source}"}, "performer": [{"reference": f"Organization/{target}"}]}
    labs = total - patients - total * 4 // 10 - 2 * follow_ups - total * 2 // 100
    for n in range(labs):
        patient = rng.randrange(patients)
        place = rng.choice(hospitals) if rng.random() < 0.5 else home[patient]
        item = rng.randrange(32)
        yield "Observation", f"l{n}", {
            "resourceType": "Observation", "id": f"l{n}", "meta": _meta(place), "status": "final",
            "code": _coded(rng, place, "lab-item", f"L{item:02d}", (LOINC, f"{1000 + item}-0"), 0.9),
            "subject": {"reference": f"Patient/p{patient}"}, "effectiveDateTime": _when(rng),
            "valueQuantity": {"value": round(rng.uniform(1, 10), 2), "unit": "mmol/L"}}


def add_service_rows(database: Database, patients: int) -> None:
    """EMPI links (one patient in ten shares a person with the next), recognition checks and reading tasks."""
    rng = random.Random(SEED + 1)
    primary, hospitals, _levels = _institutions()
    now = datetime.now(timezone.utc)
    with database.connection(write=True) as connection:
        persons, records = [], []
        for n in range(0, patients // 10 * 2, 2):
            person = f"person-{n}"
            persons.append({"person_id": person, "status": "active", "created": now, "updated": now})
            records += [{"patient_id": f"p{m}", "person_id": person, "grade": "certain", "origin": "auto",
                         "institution": "org-ks-1", "features": "{}", "updated": now} for m in (n, n + 1)]
        connection.execute(insert(empi_person), persons)
        connection.execute(insert(empi_record), records)
        checks = []
        for _ in range(100_000):
            at = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
            recognizable = rng.random() < 0.7
            decision = rng.choice(("recognized", "recognized", "retested", None)) if recognizable else None
            checks.append({"check_id": str(uuid.UUID(int=rng.getrandbits(128))), "checked_at": at,
                           "check_day": at.date().isoformat(), "institution": rng.choice(primary + hospitals),
                           "item_id": "glu", "requested": "http://loinc.org|2345-7", "origin": "order-sign",
                           "recognizable": 1 if recognizable else 0, "price_fen": 500, "decision": decision,
                           "reason": "emergency" if decision == "retested" else None, "checked_by": "bench"})
        for start in range(0, len(checks), 10_000):
            connection.execute(insert(recognition_check), checks[start:start + 10_000])
        tasks = []
        for n in range(50_000):
            created = YEAR_START + timedelta(seconds=rng.randrange(365 * 86400))
            done = rng.random() < 0.95
            tasks.append({"task_id": f"t{n}", "focus": f"ImagingStudy/s{n}", "site": rng.choice(primary),
                          "center_id": rng.choice(("ks-imaging", "ks-ecg")), "modality": "CT", "priority": "routine",
                          "state": "completed" if done else "assigned", "created": created,
                          "deadline": created + timedelta(hours=24), "sla_level": 0,
                          "completed_at": created + timedelta(minutes=rng.randrange(10, 2000)) if done else None})
        for start in range(0, len(tasks), 10_000):
            connection.execute(insert(tele_task), tasks[start:start + 10_000])
    database.analyze_store()


def timed(dashboards: Dashboards, measure_ids: list[str], first: date, last: date, unit: str | None,
          runs: int) -> list[float]:
    """Milliseconds of ``runs`` evaluations (after one warm-up)."""
    dashboards.evaluate_many(measure_ids, first, last, unit, None)
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        dashboards.evaluate_many(measure_ids, first, last, unit, None)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reuse", action="store_true", help="time the data an earlier run stored")
    parser.add_argument("--rebuild-facts", action="store_true", help="with --reuse: read every resource into facts "
                        "again first (timed)")
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "hub-bench-dashboards"
    workdir.mkdir(exist_ok=True)
    if not args.reuse:
        (workdir / "bench.db").unlink(missing_ok=True)
    url = (existing_database_url if args.reuse else fresh_database_url)(args.database, workdir, DATABASE)
    database = Database(Settings(database_url=url, key_dir=str(workdir / "keys"), dashboard_worker=False))
    dashboards = Dashboards(database)
    if not args.reuse:
        upgrade(database.engine)
        with database.fhir_service(write=True) as service:
            apply_roster(service, load_roster(ROSTER))
        started = time.monotonic()
        written = store_resources(database, resources(args.resources), BATCH)
        print(f"stored {written:,} resources in {time.monotonic() - started:,.0f} s")
        started = time.monotonic()
        stats = dashboards.refresh()
        seconds = time.monotonic() - started
        print(f"facts: {stats.as_dict()} in {seconds:,.1f} s ({stats.resources / seconds:,.0f} resources/s)")
        add_service_rows(database, args.resources // 10)
        database.analyze(dash_fact, dash_total, vacuum=True)  # as autovacuum leaves them after a load
    elif args.rebuild_facts:
        started = time.monotonic()
        stats = dashboards.rebuild()
        seconds = time.monotonic() - started
        print(f"facts rebuilt (with VACUUM ANALYZE): {stats.as_dict()} in {seconds:,.1f} s "
              f"({stats.resources / seconds:,.0f} resources/s)")
    print(f"\n{args.database}, {args.resources:,} resources: milliseconds per evaluation (p50 / max of {args.runs})")
    periods = {"year 2026": (date(2026, 1, 1), date(2026, 12, 31)), "2026-Q2": (date(2026, 4, 1), date(2026, 6, 30))}
    units = {"all": None, "consortium": "consortium-ks", "zone": "zone-ks-1", "institution": "org-ks-chc-yushan"}
    print(f"{'indicator':26}" + "".join(f"{p + ' · ' + u:>26}" for p in periods for u in ("all", "institution")))
    worst = 0.0
    for measure_id in measures():
        cells = []
        for first, last in periods.values():
            for unit in ("all", "institution"):
                values = timed(dashboards, [measure_id], first, last, units[unit], args.runs)
                worst = max(worst, max(values))
                cells.append(f"{statistics.median(values):8.1f} / {max(values):7.1f}")
        print(f"{measure_id:26}" + "".join(f"{c:>26}" for c in cells))
    for name, unit in units.items():
        values = timed(dashboards, list(measures()), *periods["year 2026"], unit, args.runs)
        print(f"page (all 7), year, {name:12} {statistics.median(values):8.1f} / {max(values):7.1f}")
    print(f"\nslowest single indicator: {worst:.1f} ms (target 200 ms on PostgreSQL)")
    database.dispose()


if __name__ == "__main__":
    main()
