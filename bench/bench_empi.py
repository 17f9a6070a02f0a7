"""EMPI benchmark: link quality on a labelled synthetic population, and match latency at scale.

    python bench/bench_empi.py quality --persons 20000 --database sqlite
    python bench/bench_empi.py latency --persons 1000000 --database postgresql
    python bench/bench_empi.py ingest --persons 20000 --database postgresql

``quality`` stores every record of the population as a source Patient, runs the EMPI over the
queue, and reports auto-link precision, recall of auto-links plus review items, and the review
volume (pairwise, against the labels). ``latency`` bulk-loads the EMPI tables (records and
blocking keys, computed by the same code, written with COPY / executemany, without golden Patients)
for N persons, then times matching 1,000 new records of persons already there (candidates and
scoring, as ``Patient/$match`` does) and placing them (the whole engine step, writes included).
``ingest`` compares storing the records with and without the EMPI keeping up (queue drained
after every page).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database_url  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.empi.blocking import blocking_keys  # noqa: E402
from hub.empi.engine import Engine, RunStats  # noqa: E402
from hub.empi.features import features_of  # noqa: E402
from hub.fhir.instants import now_utc  # noqa: E402
from hub.store.database import Database  # noqa: E402
from hub.store.index_rows import insert_rows  # noqa: E402
from hub.store.migrate import upgrade  # noqa: E402
from hub.store.tables import empi_block, empi_person, empi_record  # noqa: E402
from hub.synthetic.population import PopulationGenerator, link_quality  # noqa: E402

NAMESPACE = uuid.UUID("6f1c2c44-5f0e-4d59-9a57-7f7b8a3c0e01")
PAGE = 1000


def _database(kind: str, workdir: Path) -> Database:
    settings = Settings(database_url=fresh_database_url(kind, workdir, "hub_bench_empi"), key_dir=str(workdir / "keys"))
    database = Database(settings)
    upgrade(database.engine)
    return database


def _store(database: Database, records: list[tuple[int, str, dict]], engine: Engine | None) -> tuple[dict, float,
                                                                                                      RunStats]:
    """Store the records as Patients, a page per transaction; with ``engine``, drain the queue after each page."""
    labels: dict[str, int] = {}
    stats = RunStats()
    started = time.perf_counter()
    for start in range(0, len(records), PAGE):
        page = []
        for label, institution, resource in records[start:start + PAGE]:
            patient_id = str(uuid.uuid5(NAMESPACE, f"{institution}|{resource['identifier'][0]['value']}"))
            labels[patient_id] = label
            page.append(("Patient", patient_id, {**resource, "id": patient_id}))
        with database.fhir_service(write=True) as service:
            service.upsert_many(page)
        if engine is not None:
            stats.add(engine.run(batch=500))
    return labels, time.perf_counter() - started, stats


def _quality_of(database: Database, labels: dict[str, int]) -> dict:
    with database.empi(write=False) as store:
        person_of, reviews = store.assignments()
    return link_quality(labels, person_of, reviews).as_dict()


def quality(args: argparse.Namespace, workdir: Path) -> dict:
    population = PopulationGenerator(seed=args.seed).population(args.persons)
    database = _database(args.database, workdir)
    engine = Engine(database)
    labels, _seconds, _ = _store(database, population.records, None)
    database.analyze_store()  # as ingest does while it stores
    started = time.perf_counter()
    stats = engine.run(batch=500)
    seconds = time.perf_counter() - started
    result = {"persons": args.persons, "records": len(population.records), "engine_seconds": round(seconds, 1),
              "records_per_second": round(len(population.records) / seconds), **stats.as_dict(),
              **_quality_of(database, labels)}
    database.dispose()
    return result


def ingest(args: argparse.Namespace, workdir: Path) -> dict:
    population = PopulationGenerator(seed=args.seed).population(args.persons)
    out = {}
    for mode in ("without", "with"):
        database = _database(args.database, workdir)
        engine = Engine(database) if mode == "with" else None
        _labels, seconds, _stats = _store(database, population.records, engine)
        out[f"{mode}_empi_records_per_second"] = round(len(population.records) / seconds)
        database.dispose()
    out["slowdown"] = round(1 - out["with_empi_records_per_second"] / out["without_empi_records_per_second"], 3)
    return out


def _bulk_load(database: Database, persons: int, seed: int) -> list[dict]:
    """Records and blocking keys of ``persons`` persons written straight into the EMPI tables; returns
    1,000 new records of persons already loaded (the probes)."""
    generator = PopulationGenerator(seed=seed)
    protector = database.protector
    probes: list[dict] = []
    chunk = 20_000
    person_pk = 0
    record_pk = 0
    made = 0
    began = time.time()
    moment = now_utc()
    while made < persons:
        batch = generator.persons(min(chunk, persons - made))
        made += len(batch)
        person_rows, record_rows, block_rows = [], [], []
        for person in batch:
            person_pk += 1
            person_id = str(uuid.uuid5(NAMESPACE, f"person|{person_pk}"))
            person_rows.append({"person_pk": person_pk, "person_id": person_id, "regional_id": f"R{person_pk}",
                                "status": "active", "merged_into": None, "created": moment, "updated": moment})
            copies = generator.random.choices((1, 2, 3), (50, 35, 15))[0]
            for _copy in range(copies):
                record_pk += 1
                institution = generator.random.choice(generator.institutions)
                resource = generator.record(person, institution, f"B{record_pk}")
                features = features_of(resource, protector)
                record_rows.append({"record_pk": record_pk, "patient_id": f"p{record_pk}", "person_id": person_id,
                                    "grade": "probable", "origin": "auto", "score": None, "institution": institution,
                                    "features": json.dumps(features.as_json(), ensure_ascii=False),
                                    "updated": moment})
                block_rows += [{"block_key": k, "record_pk": record_pk} for k in blocking_keys(features)]
            if len(probes) < 1000 and generator.random.random() < 0.01:
                probes.append(generator.record(person, generator.random.choice(generator.institutions), "probe"))
        with database.connection(write=True) as connection:
            insert_rows(connection, empi_person, person_rows)
            insert_rows(connection, empi_record, record_rows)
            insert_rows(connection, empi_block, block_rows)
        print(f"  loaded {made} persons, {record_pk} records ({time.time() - began:.0f} s)", file=sys.stderr)
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE hub_empi_person, hub_empi_record, hub_empi_block")
            if person_pk:
                connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('hub_empi_person', 'person_pk'), "
                                           f"{person_pk})")
                connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('hub_empi_record', 'record_pk'), "
                                           f"{record_pk})")
    else:
        database.refresh_statistics(force=True)
    return probes


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2)}


def latency(args: argparse.Namespace, workdir: Path) -> dict:
    database = _database(args.database, workdir)
    started = time.perf_counter()
    probes = _bulk_load(database, args.persons, args.seed)
    load_seconds = time.perf_counter() - started
    engine = Engine(database)
    match_times, place_times, auto = [], [], 0
    for number, resource in enumerate(probes):
        features = features_of(resource, database.protector)
        with database.empi_batch() as (service, store):
            matcher = engine.matcher(service, store)
            began = time.perf_counter()
            candidates = matcher.candidates(features)
            match_times.append(time.perf_counter() - began)
            auto += bool(candidates and candidates[0].comparison.decision == "auto-link")
        patient_id = f"probe-{number}"
        with database.fhir_service(write=True) as service:
            service.upsert_many([("Patient", patient_id, {**resource, "id": patient_id})])
        began = time.perf_counter()
        engine.run_once()
        place_times.append(time.perf_counter() - began)
    database.dispose()
    return {"persons": args.persons, "load_seconds": round(load_seconds), "probes": len(probes),
            "probes_linked_automatically": auto,
            "match": _percentiles(match_times), "place_with_writes": _percentiles(place_times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("quality", "latency", "ingest"))
    parser.add_argument("--persons", type=int, default=20_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = {"quality": quality, "latency": latency, "ingest": ingest}[args.mode](args, Path(workdir))
    print(json.dumps({"mode": args.mode, "database": args.database, **result}, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
