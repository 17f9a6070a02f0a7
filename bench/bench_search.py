"""Benchmark: FHIR search over a regional data set of Patients and their lab Observations.

Loads N Patients (PUT, ids ``pt-000001``…) and N×9 Observations (POST) through the HTTP API
as transaction Bundles of 500 entries — the ingest-with-indexing figure — then times six
searches over HTTP (uvicorn, one worker, keep-alive) and, on PostgreSQL, prints the
``EXPLAIN (ANALYZE, BUFFERS)`` plan of every SELECT one instance of each search runs.
Run by hand::

    .venv/bin/python bench/bench_search.py                      # 100,000 Patients, 900,000 Observations
    .venv/bin/python bench/bench_search.py --reuse              # search the hub_bench_search database loaded before
    .venv/bin/python bench/bench_search.py --database sqlite --patients 2000 --runs 50

The data are deterministic (``--reuse`` recomputes the parameter values from the ids).
Exits non-zero when a plan scans a large table sequentially, or a search fails or returns
wrong results; a search the server refuses (4xx) is reported as unsupported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from common import admin_headers, existing_database_url, fresh_database_url, server_env
from search_data import (
    BUNDLE_SIZE,
    LOINC,
    MRN_SYSTEM,
    SEED,
    make_observation,
    make_patient,
    mrn,
    observation_bundles,
    patient_bundles,
    patient_id,
)
from search_plans import explain_plans
from sqlalchemy.engine import make_url

from hub.config import Settings
from hub.store.database import Database
from hub.store.migrate import current_revision, head_revision

ROOT = Path(__file__).resolve().parent.parent
#: The PostgreSQL database of this benchmark (kept for --reuse; the other benchmarks recreate hub_bench).
SEARCH_DATABASE = "hub_bench_search"
HUB = str(Path(sys.executable).with_name("hub"))
#: Where the SQLite benchmark database lives (kept for ``--reuse``; ``var/`` is git-ignored).
SQLITE_DIR = ROOT / "var" / "bench-search"
PROGRESS_EVERY = 50_000
WARMUP = 20
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", "Prefer": "return=minimal"}



# -- server and load -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``hub serve`` (uvicorn, one worker) on a free port; returns the process and its base URL."""
    env = server_env(url)
    port = _free_port()
    with log.open("wb") as sink:
        server = subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
                HEADERS.update(admin_headers(HUB, base, env))  # every request of the run carries the token
                return server, base
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def load_phase(base: str, label: str, bodies: Iterator[tuple[bytes, int]], total: int, connections: int) -> float:
    """POST the transaction Bundles over ``connections`` keep-alive connections; returns resources/s."""
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def send(body: bytes, count: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=base, headers=HEADERS, timeout=600)
            with lock:
                clients.append(client)
        response = client.post("/fhir", content=body)
        if response.status_code != 200:
            raise RuntimeError(f"{label}: transaction failed with HTTP {response.status_code}:\n{response.text[:3000]}")
        entries = response.json().get("entry", [])
        bad = [e.get("response", {}).get("status") for e in entries
               if not str(e.get("response", {}).get("status", "")).startswith("20")]
        if len(entries) != count or bad:
            raise RuntimeError(f"{label}: transaction answered {len(entries)} entries of {count}, statuses {bad[:5]}")
        return count

    done, next_report = 0, PROGRESS_EVERY
    start = time.perf_counter()

    def collect(finished: set[Future]) -> None:
        nonlocal done, next_report
        for future in finished:
            done += future.result()
        if done >= next_report or done == total:
            elapsed = time.perf_counter() - start
            print(f"  {label}: {done:>9,} / {total:,}  {elapsed:7.1f} s  {done / elapsed:8,.0f}/s", flush=True)
            next_report = (done // PROGRESS_EVERY + 1) * PROGRESS_EVERY

    try:
        with ThreadPoolExecutor(max_workers=connections) as pool:
            in_flight: set[Future] = set()
            for body, count in bodies:
                in_flight.add(pool.submit(send, body, count))
                if len(in_flight) >= 2 * connections:
                    finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    collect(finished)
            while in_flight:
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(finished)
    finally:
        for client in clients:
            client.close()
    return done / (time.perf_counter() - start)


def count_of(client: httpx.Client, resource_type: str) -> int | None:
    response = client.get(f"/fhir/{resource_type}", params={"_summary": "count"})
    if response.status_code != 200:
        return None
    return response.json().get("total")


def analyze(url: str) -> None:
    """VACUUM ANALYZE after the bulk load: the steady state autovacuum reaches (statistics, and
    the visibility map that lets index-only scans skip the table)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# -- queries ---------------------------------------------------------------------------------------

Params = list[tuple[str, str]]


@dataclass(frozen=True)
class Query:
    label: str
    resource_type: str
    #: Draws one instance: its parameters and what the check needs to know.
    draw: Callable[[random.Random], tuple[Params, dict]]
    #: A problem with the response's (match, include) entries, or None.
    check: Callable[[list[dict], list[dict], dict], str | None]


@dataclass
class Result:
    query: Query
    latencies: list[float] = field(default_factory=list)
    entries: list[int] = field(default_factory=list)
    matches: list[int] = field(default_factory=list)
    unsupported: str | None = None
    failure: str | None = None
    wrong: list[str] = field(default_factory=list)
    sample: Params = field(default_factory=list)


def _codes(resource: dict) -> set[str]:
    return {c.get("code") for c in resource.get("code", {}).get("coding", []) if c.get("system") == LOINC}


def _subject(resource: dict) -> str:
    return resource.get("subject", {}).get("reference", "")


def build_queries(patients: int, per_patient: int) -> list[Query]:
    def any_patient(rng: random.Random) -> int:
        return rng.randint(1, patients)

    def subject_code_date(rng: random.Random) -> tuple[Params, dict]:
        n = any_patient(rng)
        code = _codes(make_observation(n, rng.randrange(per_patient))).pop()
        return [("subject", f"Patient/{patient_id(n)}"), ("code", f"{LOINC}|{code}"),
                ("date", "ge2025-01-01")], {"n": n, "code": code}

    def check_subject_code_date(matches: list[dict], _inc: list[dict], want: dict) -> str | None:
        for m in matches:
            # the day before too: a date without a zone is read in the server's zone
            if (_subject(m) != f"Patient/{patient_id(want['n'])}" or want["code"] not in _codes(m)
                    or m.get("effectiveDateTime", "") < "2024-12-31"):
                return f"Observation/{m.get('id')} does not match {want}"
        return None

    def family(rng: random.Random) -> tuple[Params, dict]:
        surname = make_patient(any_patient(rng))["name"][0]["family"]
        return [("family", surname)], {"family": surname}

    def check_family(matches: list[dict], _inc: list[dict], want: dict) -> str | None:
        if not matches:
            return f"no Patient with family {want['family']}"
        for m in matches:
            if not any(nm.get("family", "").startswith(want["family"]) for nm in m.get("name", [])):
                return f"Patient/{m.get('id')} has no family {want['family']}"
        return None

    def birth_year(rng: random.Random) -> tuple[Params, dict]:
        year = make_patient(any_patient(rng))["birthDate"][:4]
        return [("birthdate", f"ge{year}-01-01"), ("birthdate", f"le{year}-12-31")], {"year": year}

    def check_birth_year(matches: list[dict], _inc: list[dict], want: dict) -> str | None:
        if not matches:
            return f"no Patient born in {want['year']}"
        bad = [m.get("id") for m in matches if m.get("birthDate", "")[:4] != want["year"]]
        return f"Patients {bad[:3]} not born in {want['year']}" if bad else None

    def identifier(rng: random.Random) -> tuple[Params, dict]:
        n = any_patient(rng)
        return [("identifier", f"{MRN_SYSTEM}|{mrn(n)}")], {"n": n}

    def check_identifier(matches: list[dict], _inc: list[dict], want: dict) -> str | None:
        ids = [m.get("id") for m in matches]
        return None if ids == [patient_id(want["n"])] else f"identifier {mrn(want['n'])} found {ids[:3]}"

    def code_sorted(rng: random.Random) -> tuple[Params, dict]:
        code = _codes(make_observation(any_patient(rng), rng.randrange(per_patient))).pop()
        return [("code", f"{LOINC}|{code}"), ("_sort", "-date"), ("_count", "50"),
                ("_include", "Observation:subject")], {"code": code}

    def check_code_sorted(matches: list[dict], included: list[dict], want: dict) -> str | None:
        if not matches:
            return f"no Observation with code {want['code']}"
        if any(want["code"] not in _codes(m) for m in matches):
            return f"an Observation without code {want['code']}"
        dates = [m.get("effectiveDateTime", "") for m in matches]  # all +08:00: text order is time order
        if dates != sorted(dates, reverse=True):
            return "matches not sorted by date, newest first"
        refs = {f"Patient/{p.get('id')}" for p in included if p.get("resourceType") == "Patient"}
        missing = {_subject(m) for m in matches} - refs
        return f"_include missed {len(missing)} subjects, e.g. {sorted(missing)[0]}" if missing else None

    def chained(rng: random.Random) -> tuple[Params, dict]:
        n = any_patient(rng)
        return [("subject:Patient.identifier", f"{MRN_SYSTEM}|{mrn(n)}")], {"n": n}

    def check_chained(matches: list[dict], _inc: list[dict], want: dict) -> str | None:
        if per_patient and not matches:
            return f"no Observation of {patient_id(want['n'])}"
        bad = [m.get("id") for m in matches if _subject(m) != f"Patient/{patient_id(want['n'])}"]
        return f"Observations {bad[:3]} not of {patient_id(want['n'])}" if bad else None

    return [
        Query("Observation?subject=Patient/{pid}&code=http://loinc.org|{code}&date=ge2025-01-01", "Observation",
              subject_code_date, check_subject_code_date),
        Query("Patient?family={surname}", "Patient", family, check_family),
        Query("Patient?birthdate=ge{Y}-01-01&birthdate=le{Y}-12-31", "Patient", birth_year, check_birth_year),
        Query(f"Patient?identifier={MRN_SYSTEM}|{{MRN}}", "Patient", identifier, check_identifier),
        Query("Observation?code=http://loinc.org|{code}&_sort=-date&_count=50&_include=Observation:subject",
              "Observation", code_sorted, check_code_sorted),
        Query(f"Observation?subject:Patient.identifier={MRN_SYSTEM}|{{MRN}}", "Observation", chained, check_chained),
    ]


def _shown(params: Params) -> str:
    return "&".join(f"{name}={value}" for name, value in params)


def _outcome_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        issues = body.get("issue", [])
        return "; ".join(i.get("diagnostics") or i.get("code", "") for i in issues) or response.text[:300]
    except ValueError:
        return response.text[:300]


def _shout(query: Query, params: Params, response: httpx.Response) -> None:
    try:
        shown = json.dumps(response.json(), ensure_ascii=False, indent=2)
    except ValueError:
        shown = response.text
    print(f"\n!! {query.resource_type}?{_shown(params)} -> HTTP {response.status_code}\n{shown[:3000]}\n",
          file=sys.stderr, flush=True)


def run_query(client: httpx.Client, query: Query, rng: random.Random, runs: int) -> Result:
    result = Result(query)
    instances = [query.draw(rng) for _ in range(WARMUP + runs)]
    result.sample = instances[WARMUP][0]
    for i, (params, want) in enumerate(instances):
        start = time.perf_counter()
        response = client.get(f"/fhir/{query.resource_type}", params=params)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            _shout(query, params, response)
            if i == 0 and 400 <= response.status_code < 500:
                result.unsupported = _outcome_message(response)
            else:
                result.failure = f"HTTP {response.status_code}: {_outcome_message(response)}"
            return result
        bundle = response.json()
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
            result.failure = f"not a searchset Bundle: {response.text[:200]}"
            return result
        entries = bundle.get("entry", [])
        matches = [e.get("resource", {}) for e in entries if e.get("search", {}).get("mode", "match") == "match"]
        included = [e.get("resource", {}) for e in entries if e.get("search", {}).get("mode") == "include"]
        problem = query.check(matches, included, want)
        if problem and len(result.wrong) < 3:
            result.wrong.append(f"{_shown(params)}: {problem}")
        if i >= WARMUP:
            result.latencies.append(elapsed)
            result.entries.append(len(entries))
            result.matches.append(len(matches))
    return result


# -- report ----------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def report(kind: str, patients: int, observations: int, load: dict[str, float] | None, connections: int,
           results: list[Result], flagged: list[str], runs: int) -> None:
    print(f"\n## FHIR search — {kind}: {patients:,} Patients, {observations:,} Observations, {runs} runs per query\n")
    if load is None:
        print("Load: reused the loaded database (no load measured)\n")
    else:
        print(f"Load (transaction Bundles of {BUNDLE_SIZE} over {connections} keep-alive connection(s), "
              "indexing included): " + ", ".join(f"{k} {v:,.0f}/s" for k, v in load.items()) + "\n")
    print("| query | p50 ms | p95 ms | mean entries |")
    print("|---|---:|---:|---:|")
    for r in results:
        label = f"`{_cell(r.query.label)}`"
        if r.unsupported is not None:
            print(f"| {label} | {_cell('unsupported: ' + r.unsupported)} | – | – |")
        elif r.failure is not None:
            print(f"| {label} | {_cell('FAILED: ' + r.failure)} | – | – |")
        else:
            q = statistics.quantiles(r.latencies, n=100, method="inclusive") if len(r.latencies) > 1 else []
            p50, p95 = (q[49], q[94]) if q else (r.latencies[0], r.latencies[0])
            entries = f"{statistics.fmean(r.entries):.1f}"
            if r.entries != r.matches:
                entries += f" ({statistics.fmean(r.matches):.1f} match)"
            if r.wrong:
                entries += " WRONG RESULTS"
            print(f"| {label} | {p50:.2f} | {p95:.2f} | {entries} |")
    for r in results:
        for problem in r.wrong:
            print(f"\nWRONG RESULTS: {problem}")
    if flagged:
        print()
        for item in flagged:
            print(f"SEQ SCAN on large table: {item}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--reuse", action="store_true", help="search the database loaded by an earlier run")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--observations-per-patient", type=int, default=9)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per query (after 20 warm-up runs)")
    parser.add_argument("--connections", type=int, choices=[1, 2], default=2, help="keep-alive connections to load")
    parser.add_argument("--no-explain", action="store_true", help="skip the PostgreSQL plans")
    args = parser.parse_args()
    if args.patients < 1 or args.observations_per_patient < 1 or args.runs < 1:
        parser.error("--patients, --observations-per-patient and --runs must be at least 1")

    SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    if args.reuse:
        url = existing_database_url(args.database, SQLITE_DIR, SEARCH_DATABASE)
        engine = Database(Settings(database_url=url)).engine
        revision, head = current_revision(engine), head_revision()
        engine.dispose()
        if revision != head:
            print(f"WARNING: the reused database is at schema {revision}, the code at {head}: after the upgrade, "
                  "rows loaded earlier may lack new index rows — load again without --reuse", flush=True)
    else:
        for suffix in ("", "-wal", "-shm") if args.database == "sqlite" else ():
            (SQLITE_DIR / f"bench.db{suffix}").unlink(missing_ok=True)
        url = fresh_database_url(args.database, SQLITE_DIR, SEARCH_DATABASE)
    subprocess.run([HUB, "db", "upgrade"], env={**os.environ, "HUB_DATABASE_URL": url}, check=True,
                   capture_output=True)

    patients, per_patient = args.patients, args.observations_per_patient
    load: dict[str, float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        server, base = start_server(url, Path(tmp) / "server.log")
        try:
            if not args.reuse:
                print(f"Loading {patients:,} Patients and {patients * per_patient:,} Observations into {args.database}",
                      flush=True)
                load = {"Patients": load_phase(base, "Patients", patient_bundles(patients), patients,
                                               args.connections)}
                load["Observations"] = load_phase(base, "Observations", observation_bundles(patients, per_patient),
                                                  patients * per_patient, args.connections)
                total_seconds = patients / load["Patients"] + patients * per_patient / load["Observations"]
                load["overall"] = patients * (1 + per_patient) / total_seconds
                if args.database == "postgresql":
                    start = time.perf_counter()
                    analyze(url)
                    print(f"  VACUUM ANALYZE: {time.perf_counter() - start:.1f} s", flush=True)
            with httpx.Client(base_url=base, headers=HEADERS, timeout=120) as client:
                found_patients, found_observations = count_of(client, "Patient"), count_of(client, "Observation")
                if args.reuse and found_patients:
                    patients = found_patients
                    per_patient = max(1, (found_observations or patients * per_patient) // patients)
                if (found_patients, found_observations) != (patients, patients * per_patient):
                    print(f"WARNING: the database holds {found_patients} Patients and {found_observations} "
                          f"Observations, expected {patients} and {patients * per_patient}", flush=True)
                rng = random.Random(SEED)
                results = []
                for query in build_queries(patients, per_patient):
                    print(f"Searching {query.label} ({WARMUP} warm-up + {args.runs} runs)", flush=True)
                    results.append(run_query(client, query, rng, args.runs))
        finally:
            server.terminate()
            server.wait(timeout=30)

    flagged: list[str] = []
    if args.database == "postgresql" and not args.no_explain:
        print("\n## Plans (in-process, EXPLAIN (ANALYZE, BUFFERS) of every SELECT of one search)")
        flagged = explain_plans(url, [(r.query.label, r.query.resource_type, None if r.unsupported else r.sample)
                                      for r in results])
    report(args.database, found_patients or patients, found_observations or patients * per_patient, load,
           args.connections, results, flagged, args.runs)
    unsupported = [r for r in results if r.unsupported is not None]
    if unsupported:
        print(f"\n{len(unsupported)} of {len(results)} searches are not supported by the server yet.")
    if flagged or any(r.failure or r.wrong for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
