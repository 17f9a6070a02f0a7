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
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import httpx
import psycopg
from common import existing_database_url, fresh_database_url

#: The PostgreSQL database of this benchmark (kept for --reuse; the other benchmarks recreate hub_bench).
SEARCH_DATABASE = "hub_bench_search"
from sqlalchemy import event
from sqlalchemy.engine import make_url

from hub.config import Settings
from hub.store.database import Database
from hub.store.migrate import current_revision, head_revision

ROOT = Path(__file__).resolve().parent.parent
HUB = str(Path(sys.executable).with_name("hub"))
#: Where the SQLite benchmark database lives (kept for ``--reuse``; ``var/`` is git-ignored).
SQLITE_DIR = ROOT / "var" / "bench-search"
SEED = 20261123
BUNDLE_SIZE = 500
PROGRESS_EVERY = 50_000
WARMUP = 20
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json", "Prefer": "return=minimal"}

MRN_SYSTEM = "urn:hub:mrn:org-ks-1"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

#: The 20 commonest Chinese surnames, weighted by their share of the population (‰).
SURNAMES = [("王", 71), ("李", 70), ("张", 67), ("刘", 54), ("陈", 45), ("杨", 31), ("黄", 22), ("赵", 20),
            ("吴", 20), ("周", 19), ("徐", 13), ("孙", 12), ("马", 12), ("朱", 11), ("胡", 10), ("郭", 10),
            ("何", 9), ("高", 9), ("林", 9), ("罗", 9)]
SURNAME_CUM = list(accumulate(w for _, w in SURNAMES))
GIVEN = {
    "male": "伟强磊军勇杰涛明超刚平辉鹏华飞斌宇浩凯健俊帆建国志文博",
    "female": "芳娜敏静丽艳娟霞燕玲英秀婷雪琳慧颖欣怡佳梅兰红洁晶倩",
}
TOWNS = ["玉山镇", "周市镇", "陆家镇", "花桥镇", "千灯镇", "张浦镇", "巴城镇", "周庄镇", "淀山湖镇", "锦溪镇"]

#: Lab tests: LOINC code, text, UCUM unit, value range, decimals, relative frequency.
LABS = [
    ("718-7", "血红蛋白", "g/dL", 10.5, 17.5, 1, 90),
    ("6690-2", "白细胞", "10*3/uL", 3.2, 11.0, 2, 90),
    ("789-8", "红细胞", "10*6/uL", 3.6, 5.9, 2, 85),
    ("777-3", "血小板", "10*3/uL", 100, 400, 0, 85),
    ("4544-3", "红细胞压积", "%", 34, 52, 1, 70),
    ("1558-6", "空腹血糖", "mg/dL", 68, 220, 0, 60),
    ("2345-7", "随机血糖", "mg/dL", 70, 260, 0, 25),
    ("4548-4", "糖化血红蛋白", "%", 4.3, 11.0, 1, 30),
    ("2093-3", "总胆固醇", "mg/dL", 110, 290, 0, 45),
    ("2571-8", "甘油三酯", "mg/dL", 40, 420, 0, 45),
    ("2085-9", "高密度脂蛋白胆固醇", "mg/dL", 28, 95, 0, 40),
    ("13457-7", "低密度脂蛋白胆固醇", "mg/dL", 50, 200, 0, 40),
    ("1742-6", "丙氨酸氨基转移酶", "U/L", 5, 90, 0, 55),
    ("1920-8", "天门冬氨酸氨基转移酶", "U/L", 8, 80, 0, 55),
    ("2324-2", "γ-谷氨酰转移酶", "U/L", 8, 150, 0, 25),
    ("6768-6", "碱性磷酸酶", "U/L", 35, 160, 0, 20),
    ("1975-2", "总胆红素", "mg/dL", 0.2, 2.2, 1, 30),
    ("1751-7", "白蛋白", "g/dL", 3.0, 5.3, 1, 30),
    ("2160-0", "肌酐", "mg/dL", 0.4, 2.0, 2, 55),
    ("3094-0", "尿素氮", "mg/dL", 6, 32, 0, 45),
    ("3084-1", "尿酸", "mg/dL", 2.4, 10.0, 1, 35),
    ("33914-3", "估算肾小球滤过率", "mL/min/{1.73_m2}", 25, 130, 0, 15),
    ("2823-3", "钾", "mmol/L", 3.2, 5.5, 1, 40),
    ("2951-2", "钠", "mmol/L", 132, 148, 0, 40),
    ("2075-0", "氯", "mmol/L", 95, 111, 0, 30),
    ("17861-6", "钙", "mg/dL", 8.2, 10.8, 1, 15),
    ("1988-5", "C反应蛋白", "mg/L", 0.3, 60, 1, 25),
    ("3016-3", "促甲状腺激素", "m[IU]/L", 0.2, 7.0, 2, 12),
    ("3024-7", "游离甲状腺素", "ng/dL", 0.7, 2.0, 2, 8),
    ("2276-4", "铁蛋白", "ng/mL", 10, 450, 0, 6),
    ("5902-2", "凝血酶原时间", "s", 9.5, 16.0, 1, 10),
    ("6301-6", "国际标准化比值", "{INR}", 0.8, 3.2, 2, 10),
]
LAB_CUM = list(accumulate(lab[-1] for lab in LABS))
FIRST_DAY = date(2020, 1, 1)
DAYS = (date(2026, 10, 31) - FIRST_DAY).days + 1
BIRTH_FIRST = date(1935, 1, 1)
BIRTH_DAYS = (date(2020, 12, 31) - BIRTH_FIRST).days + 1


# -- data ------------------------------------------------------------------------------------------


def patient_id(n: int) -> str:
    return f"pt-{n:06d}"


def mrn(n: int) -> str:
    return f"MRN{n:08d}"


def make_patient(n: int) -> dict:
    """Patient number ``n`` (1-based); the same every time, so ``--reuse`` can draw from it."""
    rng = random.Random(f"patient:{n}")
    gender = rng.choice(["male", "female"])
    family = rng.choices(SURNAMES, cum_weights=SURNAME_CUM)[0][0]
    given = "".join(rng.sample(GIVEN[gender], rng.choice([1, 2, 2])))
    town = rng.choice(TOWNS)
    return {
        "resourceType": "Patient",
        "id": patient_id(n),
        "identifier": [{"use": "usual", "system": MRN_SYSTEM, "value": mrn(n)}],
        "active": True,
        "name": [{"use": "official", "text": family + given, "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}",
                     "use": "mobile"}],
        "gender": gender,
        "birthDate": (BIRTH_FIRST + timedelta(days=rng.randrange(BIRTH_DAYS))).isoformat(),
        "address": [{"use": "home", "text": f"江苏省苏州市昆山市{town}", "state": "江苏省", "city": "昆山市",
                     "district": town}],
    }


def make_observation(n: int, r: int) -> dict:
    """Observation ``r`` (0-based) of patient ``n``; deterministic like :func:`make_patient`."""
    rng = random.Random(f"observation:{n}:{r}")
    code, text, unit, low, high, decimals, _ = rng.choices(LABS, cum_weights=LAB_CUM)[0]
    day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
    seconds = 7 * 3600 + rng.randrange(10 * 3600)  # drawn between 07:00 and 17:00
    value = round(rng.uniform(low, high), decimals)
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}], "text": text},
        "subject": {"reference": f"Patient/{patient_id(n)}"},
        "effectiveDateTime": f"{day.isoformat()}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
                             "+08:00",
        "valueQuantity": {"value": int(value) if decimals == 0 else value, "unit": unit, "system": UCUM,
                          "code": unit},
    }


def _bundle(entries: list[dict]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries},
                      ensure_ascii=False, separators=(",", ":")).encode()


def patient_bundles(patients: int) -> Iterator[tuple[bytes, int]]:
    for first in range(1, patients + 1, BUNDLE_SIZE):
        numbers = range(first, min(first + BUNDLE_SIZE, patients + 1))
        yield _bundle([{"resource": make_patient(n), "request": {"method": "PUT", "url": f"Patient/{patient_id(n)}"}}
                       for n in numbers]), len(numbers)


def observation_bundles(patients: int, per_patient: int) -> Iterator[tuple[bytes, int]]:
    """Round ``r`` holds each patient's ``r``-th Observation, patients shuffled: arrival order is mixed."""
    order = list(range(1, patients + 1))
    random.Random(SEED).shuffle(order)
    pending: list[dict] = []
    for r in range(per_patient):
        for n in order:
            pending.append({"resource": make_observation(n, r), "request": {"method": "POST", "url": "Observation"}})
            if len(pending) == BUNDLE_SIZE:
                yield _bundle(pending), len(pending)
                pending = []
    if pending:
        yield _bundle(pending), len(pending)


# -- server and load -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """``hub serve`` (uvicorn, one worker) on a free port; returns the process and its base URL."""
    env = {**os.environ, "HUB_DATABASE_URL": url}
    port = _free_port()
    with log.open("wb") as sink:
        server = subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if httpx.get(f"{base}/health").status_code == 200:
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


# -- plans -----------------------------------------------------------------------------------------

SEQ_SCAN = re.compile(r"Seq Scan on (hub_resource_version|hub_resource|hub_idx_\w+)\b")


def explain_plans(url: str, results: list[Result]) -> list[str]:
    """Print the plan of each SELECT one search runs (in-process); returns the flagged seq scans."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient on httpx: deprecated, works
        from fastapi.testclient import TestClient

    from hub.api.app import create_app

    settings = Settings(database_url=url)
    database = Database(settings)
    captured: list[tuple[str, Any]] = []
    capturing = threading.Event()

    @event.listens_for(database.engine, "before_cursor_execute")
    def _capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if capturing.is_set() and not many and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    flagged: list[str] = []
    client = TestClient(create_app(settings, database))
    try:
        for result in results:
            query = result.query
            print(f"\n### {query.label}\n")
            if result.unsupported or not result.sample:
                print("(skipped: the search did not run)")
                continue
            captured.clear()
            capturing.set()
            try:
                response = client.get(f"/fhir/{query.resource_type}", params=result.sample)
            finally:
                capturing.clear()
            print(f"GET /fhir/{query.resource_type}?{_shown(result.sample)} -> {response.status_code}, "
                  f"{len(captured)} SELECT(s)")
            for number, (statement, parameters) in enumerate(captured, 1):
                print(f"\n-- SELECT {number}: {' '.join(statement.split())}\n-- parameters: {parameters}")
                with database.engine.connect() as conn:
                    plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement,
                                                                   parameters)]
                print("\n".join(plan))
                for table in sorted({m.group(1) for line in plan for m in SEQ_SCAN.finditer(line)}):
                    print(f"SEQ SCAN on large table: {table}")
                    flagged.append(f"{table} ({query.label}, SELECT {number})")
    finally:
        client.close()
        database.dispose()
    return flagged


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
        flagged = explain_plans(url, results)
    report(args.database, found_patients or patients, found_observations or patients * per_patient, load,
           args.connections, results, flagged, args.runs)
    unsupported = [r for r in results if r.unsupported is not None]
    if unsupported:
        print(f"\n{len(unsupported)} of {len(results)} searches are not supported by the server yet.")
    if flagged or any(r.failure or r.wrong for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
