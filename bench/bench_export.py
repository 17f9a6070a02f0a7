"""Benchmark: FHIR Bulk Data $export of a million resources, and the memory it takes.

Stores N Patients of 30 institutions (one consortium) and N×9 lab Observations in a fresh
database, in-process and with every search-index row (as ingest writes them), then serves
the hub (``hub serve``, one process: its export worker runs the jobs) and times, over HTTP,
kick-off to manifest and the download of every file, for:

- the system-level export of everything;
- the patient-level export (Patients and the Observations referring to one);
- a Group of 1,000 listed members, and a Group of one institution's patients;
- an incremental export (``_since`` the first one's ``transactionTime``) after 1 % of the
  Observations changed.

The hub's peak RSS (VmHWM) is read after each. Run by hand::

    .venv/bin/python bench/bench_export.py --database postgresql          # 100,000 Patients, 900,000 Observations
    .venv/bin/python bench/bench_export.py --database sqlite --reuse      # export the data stored by an earlier run
    .venv/bin/python bench/bench_export.py --database sqlite --patients 5000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import admin_headers, existing_database_url, fresh_database_url, server_env, store_resources
from search_data import make_observation, make_patient, patient_id

from hub.config import Settings
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.instants import format_instant, now_utc
from hub.store.database import Database
from hub.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "hub_bench_export"
INSTITUTIONS = 30
BATCH = 2000
ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def institution(n: int) -> str:
    return f"org-bench-{n % INSTITUTIONS:02d}"


def tagged(resource: dict, n: int) -> dict:
    return {**resource, "meta": {"tag": [{"system": INSTITUTION_TAG, "code": institution(n)}]}}


def store(database: Database, patients: int, per_patient: int) -> float:
    """Write the data set through the FHIR service (index rows, sealed phone numbers); resources/s."""
    started = time.monotonic()
    organizations = [("Organization", "bench-cons", {"resourceType": "Organization", "id": "bench-cons",
                                                      "name": "基准测试医共体"})]
    organizations += [("Organization", institution(i), {
        "resourceType": "Organization", "id": institution(i), "name": f"成员单位{i}",
        "partOf": {"reference": "Organization/bench-cons"}}) for i in range(INSTITUTIONS)]
    with database.fhir_service(write=True) as service:
        service.upsert_many(organizations)

    def resources() -> Iterator[tuple[str, str, dict]]:
        for n in range(1, patients + 1):
            patient = tagged(make_patient(n), n)
            yield "Patient", patient["id"], patient
            for r in range(per_patient):
                obs = {**tagged(make_observation(n, r), n), "id": f"ob-{n}-{r}"}
                yield "Observation", obs["id"], obs

    written = store_resources(database, resources(), BATCH)
    return written / (time.monotonic() - started)


@dataclass
class Result:
    name: str
    resources: int
    files: int
    export_seconds: float
    download_seconds: float
    megabytes: float
    peak_rss_mb: float


def peak_rss(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_export(client: httpx.Client, name: str, path: str, pid: int, **params: str) -> tuple[Result, dict]:
    started = time.monotonic()
    kicked = client.get(path, params=params, headers=ASYNC)
    kicked.raise_for_status()
    status_url = kicked.headers["Content-Location"]
    while (answer := client.get(status_url)).status_code == 202:
        time.sleep(0.2)
    answer.raise_for_status()
    exported = time.monotonic() - started
    manifest = answer.json()
    started = time.monotonic()
    size = lines = 0
    for item in manifest["output"]:
        with client.stream("GET", item["url"]) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                size += len(chunk)
                lines += chunk.count(b"\n")
    downloaded = time.monotonic() - started
    total = sum(item["count"] for item in manifest["output"])
    assert lines == total, f"{name}: {lines} lines, manifest says {total}"
    return Result(name, total, len(manifest["output"]), exported, downloaded, size / 1e6, peak_rss(pid)), manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--per-patient", type=int, default=9)
    parser.add_argument("--reuse", action="store_true", help="export the data an earlier run stored")
    parser.add_argument("--port", type=int, default=8097)
    args = parser.parse_args()
    workdir = Path(tempfile.gettempdir()) / "hub-bench-export"
    workdir.mkdir(exist_ok=True)
    if args.reuse:
        url = existing_database_url(args.database, workdir, DATABASE)
    else:
        if args.database == "sqlite":
            (workdir / "bench.db").unlink(missing_ok=True)
        url = fresh_database_url(args.database, workdir, DATABASE)
    env = {**server_env(url), "HUB_EXPORT_DIR": str(workdir / "exports"), "HUB_KEY_DIR": str(workdir / "keys"),
           "HUB_EMPI_WORKER": "off", "HUB_SUBSCRIPTION_WORKER": "off"}
    settings = Settings(database_url=url, key_dir=env["HUB_KEY_DIR"])
    database = Database(settings)
    if not args.reuse:
        upgrade(database.engine)
        total = args.patients * (1 + args.per_patient)
        print(f"storing {args.patients:,} Patients and {args.patients * args.per_patient:,} Observations "
              f"({total:,} resources) on {args.database}", flush=True)
        print(f"stored at {store(database, args.patients, args.per_patient):,.0f} resources/s", flush=True)
    with database.fhir_service(write=True) as service:
        members = [{"entity": {"reference": f"Patient/{patient_id(n)}"}}
                   for n in range(1, args.patients + 1, max(1, args.patients // 1000))][:1000]
        service.update("Group", "bench-members", {"resourceType": "Group", "id": "bench-members", "type": "person",
                                                  "actual": True, "member": members})
        service.update("Group", "bench-institution", {
            "resourceType": "Group", "id": "bench-institution", "type": "person", "actual": False,
            "characteristic": [{"code": {"coding": [{"system": "urn:hub:group", "code": "institution"}]},
                                "valueReference": {"reference": f"Organization/{institution(0)}"}, "exclude": False}]})
    hub = str(Path(sys.executable).with_name("hub"))
    server_log = (workdir / "server.log").open("wb")
    server = subprocess.Popen([hub, "serve", "--host", "127.0.0.1", "--port", str(args.port)], env=env,
                              stdout=server_log, stderr=subprocess.STDOUT, cwd=workdir)
    results: list[Result] = []
    try:
        base = f"http://127.0.0.1:{args.port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        print(f"hub serve at rest: peak RSS {peak_rss(server.pid):.0f} MB", flush=True)
        headers = admin_headers(hub, base, env)
        with httpx.Client(base_url=f"{base}/fhir", headers=headers, timeout=600) as client:
            everything, first = run_export(client, "system level, every resource", "/$export", server.pid)
            results.append(everything)
            print(everything, flush=True)
            for name, path, params in (
                ("patient level, Patient + Observation", "/Patient/$export", {"_type": "Patient,Observation"}),
                ("Group of 1,000 listed Patients", "/Group/bench-members/$export", {}),
                ("Group of one institution's patients", "/Group/bench-institution/$export", {}),
            ):
                result, _ = run_export(client, name, path, server.pid, **params)
                results.append(result)
                print(result, flush=True)
            changed = max(1, args.patients * args.per_patient // 100)
            moment = now_utc()
            with database.fhir_service(write=True) as service:
                updates = []
                for k in range(changed):
                    n, r = 1 + k % args.patients, (k // args.patients) % args.per_patient
                    obs = {**tagged(make_observation(n, r), n), "id": f"ob-{n}-{r}", "status": "amended",
                           "issued": format_instant(moment)}  # a change on every run (--reuse too)
                    updates.append(("Observation", obs["id"], obs))
                for start in range(0, len(updates), BATCH):
                    service.upsert_many(updates[start:start + BATCH])
            assert moment.isoformat() > first["transactionTime"][:19]
            result, _ = run_export(client, f"_since the first export ({changed:,} changed)", "/$export", server.pid,
                                   _since=first["transactionTime"])
            results.append(result)
            print(result, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
        database.dispose()
    print(f"\n{args.database}: one hub process, client on the same 2 cores")
    print("| export | resources | files | kick-off → manifest | resources/s | download | MB | hub peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.name} | {r.resources:,} | {r.files} | {r.export_seconds:.1f} s | "
              f"{r.resources / r.export_seconds:,.0f} | {r.download_seconds:.1f} s | {r.megabytes:,.0f} | "
              f"{r.peak_rss_mb:.0f} MB |")
    if os.environ.get("HUB_BENCH_KEEP") != "1" and args.database == "sqlite":
        print(f"(database kept at {workdir / 'bench.db'} for --reuse)")


if __name__ == "__main__":
    main()
