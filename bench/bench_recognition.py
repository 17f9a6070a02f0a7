"""Benchmark: latency of the 检查检验结果互认 check (target: p99 <= 20 ms on PostgreSQL, 1,000,000 Observations).

Stores, in a fresh database and in-process (every search-index row, as ingest writes them):
the shipped terminology; a region -> one consortium -> 30 institutions (``org-bench-00..29``,
secondary hospitals); a catalogue of the 32 LOINC lab items ``search_data.make_observation``
emits (qualification ``eqa``, validity 7d/30d/90d in turn, consortium scope); a 2026 室间质评
record of every institution and item (about 1 in 10 failed); then N Patients and N×9
Observations (``make_observation``'s, with ``effectiveDateTime`` moved into the 60 days before
``AT``, performed at ``performer`` = one of the 30 institutions, tagged with it too). The
recognition service is installed first, so the write-time marker tags qualifying results HR as
in production (and nothing needs re-marking). The EMPI is left empty: patients not in it are
searched directly (its two look-ups per check still run); with ``--linked`` patients 2k-1 and 2k
(two institutions) are put under one regional person first, so every check follows the links.

Then times single-threaded, in-process (no HTTP), ``Recognition.check`` of one order at a time
(the check is recorded, as in production: that write is in the timing), over random patients,
ordering institutions and the items of the patient's own results, at the fixed moment ``AT``
(so a --reuse run finds the same results whenever it runs): once naming the patient as
``Patient/<id>``, once by its record number ``urn:hub:mrn:org-ks-1|MRN…``. 100 checks warm up first.
Run by hand::

    .venv/bin/python bench/bench_recognition.py --database postgresql          # 111,112 Patients, 1,000,008 Observations
    .venv/bin/python bench/bench_recognition.py --database postgresql --reuse  # check the data an earlier run stored
    .venv/bin/python bench/bench_recognition.py --database postgresql --reuse --linked  # with EMPI links
    .venv/bin/python bench/bench_recognition.py --database sqlite --patients 2000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from common import existing_database_url, fresh_database_url, store_resources
from search_data import LABS, LOINC, MRN_SYSTEM, make_observation, make_patient, mrn, patient_id
from sqlalchemy import func, insert, select

from hub.coding.catalog import catalog_resources
from hub.config import Settings
from hub.fhir.access import INSTITUTION_TAG
from hub.recognition.check import CheckRequest
from hub.recognition.service import Recognition, install
from hub.store.database import Database
from hub.store.migrate import upgrade
from hub.store.organizations import KIND_SYSTEM, LEVEL_SYSTEM
from hub.store.tables import empi_person, empi_record

DATABASE = "hub_bench_recognition"
INSTITUTIONS = 30
BATCH = 2000
SEED = 20261206
#: The moment of every check; results fall in the 60 days before it.
AT = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=8)))
SPREAD_SECONDS = 60 * 86400
YEAR = 2026
VALIDITIES = ("7d", "30d", "90d")


def institution(n: int) -> str:
    return f"org-bench-{n % INSTITUTIONS:02d}"


def item_id(code: str) -> str:
    return "lab-" + code


def organizations() -> list[tuple[str, str, dict[str, Any]]]:
    def org(org_id: str, name: str, kind: str, parent: str | None, level: str | None = None) -> dict[str, Any]:
        types = [{"coding": [{"system": KIND_SYSTEM, "code": kind}]}]
        if level:
            types.append({"coding": [{"system": LEVEL_SYSTEM, "code": level}]})
        return {"resourceType": "Organization", "id": org_id, "active": True, "type": types, "name": name,
                **({"partOf": {"reference": f"Organization/{parent}"}} if parent else {})}

    rows = [org("bench-region", "基准测试区域", "region", None),
            org("bench-cons", "基准测试医共体", "consortium", "bench-region")]
    rows += [org(institution(i), f"成员单位{i}", "institution", "bench-cons", "secondary") for i in range(INSTITUTIONS)]
    return [("Organization", r["id"], r) for r in rows]


def catalogue_yaml() -> str:
    lines = ['version: "bench"', "name: 基准测试互认项目目录", "items:"]
    for k, (code, text, *_rest) in enumerate(LABS):
        lines.append(f'  - {{id: {item_id(code)}, name: "{text}", code: "{LOINC}|{code}", '
                     f"validity: {VALIDITIES[k % 3]}, scope: consortium, qualification: eqa, price: 5.00}}")
    return "\n".join(lines) + "\n"


def eqa_records() -> list[dict[str, Any]]:
    return [{"institution": institution(i), "item": item_id(code), "year": YEAR, "passed": (i + k) % 10 != 0}
            for i in range(INSTITUTIONS) for k, (code, *_rest) in enumerate(LABS)]


def observation(n: int, r: int) -> dict[str, Any]:
    """``make_observation(n, r)``, 0-60 days before AT, performed at one of the 30 institutions."""
    obs = make_observation(n, r)
    when = AT - timedelta(seconds=random.Random(f"when:{n}:{r}").randrange(SPREAD_SECONDS))
    org = institution(n + 7 * r)
    return {**obs, "id": f"ob-{n}-{r}", "effectiveDateTime": when.isoformat(timespec="seconds"),
            "performer": [{"reference": f"Organization/{org}"}],
            "meta": {"tag": [{"system": INSTITUTION_TAG, "code": org}]}}


def set_up(database: Database, recognition: Recognition) -> None:
    """Terminology, institutions, catalogue and 室间质评 records, before any result is stored."""
    started = time.monotonic()
    with database.fhir_service(write=True) as service:
        service.upsert_many([(r.resource_type, r.resource_id, r.resource) for r in catalog_resources()])
    with database.fhir_service(write=True) as service:
        service.upsert_many(organizations())
    loaded = recognition.load_catalogue(catalogue_yaml(), actor="bench")
    saved = recognition.save_eqa(eqa_records(), actor="bench")
    print(f"terminology, {INSTITUTIONS} institutions, catalogue of {loaded['items']} items, "
          f"{saved['saved']} 室间质评 records in {time.monotonic() - started:.1f} s", flush=True)


def store(database: Database, patients: int, per_patient: int) -> tuple[int, float]:
    """Write Patients and Observations through the FHIR service (index rows, HR marks); (written, seconds)."""
    started = time.monotonic()

    def resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
        for n in range(1, patients + 1):
            patient = {**make_patient(n), "meta": {"tag": [{"system": INSTITUTION_TAG, "code": institution(n)}]}}
            yield "Patient", patient["id"], patient
            yield from (("Observation", f"ob-{n}-{r}", observation(n, r)) for r in range(per_patient))

    written = store_resources(database, resources(), BATCH)
    return written, time.monotonic() - started


def link_pairs(database: Database, patients: int) -> int:
    """Put patients 2k-1 and 2k (two institutions) under one regional person each, as the EMPI would, with
    rows written directly (running the matcher over 100,000 Patients is the EMPI benchmark's business); how many
    persons were added (0: already linked)."""
    with database.connection(write=True) as connection:
        if connection.execute(select(func.count()).select_from(empi_record)).scalar_one():
            return 0
        now = datetime.now(timezone.utc)
        persons, records = [], []
        for first in range(1, patients, 2):
            person = f"bench-person-{first}"
            persons.append({"person_id": person, "regional_id": None, "status": "active", "merged_into": None,
                            "created": now, "updated": now})
            records += [{"patient_id": patient_id(n), "person_id": person, "grade": "certain", "origin": "auto",
                         "score": 1.0, "institution": institution(n), "features": "{}", "updated": now}
                        for n in (first, first + 1)]
        for start in range(0, len(persons), 10_000):
            connection.execute(insert(empi_person), persons[start:start + 10_000])
        for start in range(0, len(records), 20_000):
            connection.execute(insert(empi_record), records[start:start + 20_000])
    database.analyze_store()
    return len(persons)


def requests(patients: int, per_patient: int, count: int, seed: int,
             name: Callable[[int], str]) -> list[CheckRequest]:
    """Orders of random patients, at random institutions, of the item of one of the patient's results."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n, r = rng.randint(1, patients), rng.randrange(per_patient)
        code = make_observation(n, r)["code"]["coding"][0]["code"]
        out.append(CheckRequest(patient=name(n), institution=institution(rng.randrange(INSTITUTIONS)),
                                code=f"{LOINC}|{code}", at=AT, origin="bench"))
    return out


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def run(recognition: Recognition, label: str, orders: list[CheckRequest], warm_up: int) -> dict[str, Any]:
    for request in orders[:warm_up]:
        recognition.check([request], actor="bench")
    timings: list[float] = []
    found = Counter[str]()
    reasons = Counter[str]()
    started = time.perf_counter()
    for request in orders[warm_up:]:
        t0 = time.perf_counter()
        result = recognition.check([request], actor="bench")[0]
        timings.append((time.perf_counter() - t0) * 1000)
        found["recognizable"] += len(result.recognizable)
        found["not_recognizable"] += len(result.not_recognizable)
        found["with_any"] += bool(result.recognizable)
        reasons.update(reason["code"] for entry in result.not_recognizable for reason in entry["reasons"])
    elapsed = time.perf_counter() - started
    ordered, count = sorted(timings), len(timings)
    row = {"label": label, "count": count, "p50": percentile(ordered, 50), "p95": percentile(ordered, 95),
           "p99": percentile(ordered, 99), "max": ordered[-1], "per_s": count / elapsed,
           "recognizable": found["recognizable"] / count, "not_recognizable": found["not_recognizable"] / count,
           "with_any": found["with_any"] / count, "reasons": dict(reasons.most_common())}
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--patients", type=int, default=111_112)
    parser.add_argument("--per-patient", type=int, default=9)
    parser.add_argument("--checks", type=int, default=2000, help="timed checks of each kind (after 100 warm-up)")
    parser.add_argument("--reuse", action="store_true", help="check the data an earlier run stored")
    parser.add_argument("--linked", action="store_true",
                        help="first put patients in pairs under regional persons (EMPI links), then check")
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "hub-bench-recognition"
    workdir.mkdir(exist_ok=True)
    if args.reuse:
        url = existing_database_url(args.database, workdir, DATABASE)
    else:
        if args.database == "sqlite":
            (workdir / "bench.db").unlink(missing_ok=True)
        url = fresh_database_url(args.database, workdir, DATABASE)
    database = Database(Settings(database_url=url, key_dir=str(workdir / "keys")))
    recognition = install(database)  # before any result is written: the marker tags them HR
    try:
        if args.reuse:
            with database.fhir_service(write=False) as service:
                if service.repository.read_current("Patient", patient_id(args.patients)) is None:
                    raise SystemExit(f"no {patient_id(args.patients)} stored: run once without --reuse (same --patients)")
        else:
            upgrade(database.engine)
            set_up(database, recognition)
            observations = args.patients * args.per_patient
            print(f"storing {args.patients:,} Patients and {observations:,} Observations on {args.database}",
                  flush=True)
            written, seconds = store(database, args.patients, args.per_patient)
            print(f"stored {written:,} resources in {seconds:.0f} s ({written / seconds:,.0f} resources/s)", flush=True)
        suffix = ""
        if args.linked:
            print(f"linked {link_pairs(database, args.patients):,} pairs of Patients under regional persons",
                  flush=True)
            suffix = ", EMPI-linked pairs"
        warm_up = 100
        rows = [run(recognition, "Patient/<id>" + suffix, requests(args.patients, args.per_patient, args.checks + warm_up, SEED,
                                                          lambda n: f"Patient/{patient_id(n)}"), warm_up),
                run(recognition, "identifier (MRN)" + suffix,
                    requests(args.patients, args.per_patient, args.checks + warm_up, SEED + 1,
                             lambda n: f"{MRN_SYSTEM}|{mrn(n)}"), warm_up)]
    finally:
        database.dispose()
    print(f"\n{args.database}, {args.patients:,} Patients, {args.patients * args.per_patient:,} Observations, "
          f"{INSTITUTIONS} institutions: one check per call, one thread, in-process (no HTTP)")
    print("| patient named by | checks | p50 | p95 | p99 | max | checks/s | recognizable / check | "
          "not recognizable / check | checks with one |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['count']:,} | {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['p99']:.1f} ms | "
              f"{r['max']:.1f} ms | {r['per_s']:,.0f} | {r['recognizable']:.2f} | {r['not_recognizable']:.2f} | "
              f"{r['with_any']:.0%} |")


if __name__ == "__main__":
    main()
