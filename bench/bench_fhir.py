"""Benchmark: transaction Bundles of 100 Patients then 100 Observations, then reads.

Runs the hub with uvicorn (one worker) on a fresh database, posts the bundles over one
HTTP keep-alive connection, and reads resources back by id. Run by hand::

    .venv/bin/python bench/bench_fhir.py --database sqlite
    .venv/bin/python bench/bench_fhir.py --database postgresql

Prints resources/second for each phase and read latency p50/p95.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import admin_headers, fresh_database_url, server_env

ROOT = Path(__file__).resolve().parent.parent
HUB = str(Path(sys.executable).with_name("hub"))
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _patient(rng: random.Random, n: int) -> dict:
    name = rng.choice(SURNAMES) + rng.choice(GIVEN)
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:hub:mrn:org-ks-1", "value": f"MRN{n:08d}"}],
        "name": [{"text": name, "family": name[0], "given": [name[1:]]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{rng.randint(1935, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "telecom": [{"system": "phone", "value": f"13{rng.randint(100000000, 999999999)}"}],
        "address": [{"text": "江苏省苏州市昆山市玉山镇", "city": "昆山市"}],
    }


def _observation(rng: random.Random, patient_ref: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "1558-6"}], "text": "空腹血糖"},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": "2026-10-08T08:10:00+08:00",
        "valueQuantity": {"value": round(rng.uniform(3.9, 12.0), 1), "unit": "mmol/L",
                          "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }


def _transaction(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


def _post_bundles(client: httpx.Client, bundles: list[bytes]) -> tuple[float, list[str]]:
    locations: list[str] = []
    start = time.perf_counter()
    for body in bundles:
        response = client.post("/fhir", content=body)
        if response.status_code != 200:
            raise RuntimeError(f"transaction failed: HTTP {response.status_code} {response.text[:1000]}")
        locations.extend("/".join(e["response"]["location"].split("/")[:2]) for e in response.json()["entry"])
    return time.perf_counter() - start, locations


def run(kind: str, bundles: int, reads: int) -> dict:
    rng = random.Random(20261123)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = fresh_database_url(kind, workdir)
        env = server_env(url)
        subprocess.run([HUB, "db", "upgrade"], env=env, check=True, capture_output=True)
        port = _free_port()
        server = subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError("server did not start")
                time.sleep(0.1)
            headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal",
                       **admin_headers(HUB, base, env)}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                # warm-up (not measured): one small bundle
                client.post("/fhir", content=json.dumps(_transaction([_patient(rng, 0)])).encode()).raise_for_status()
                patient_bodies = [
                    json.dumps(_transaction([_patient(rng, b * 100 + i + 1) for i in range(100)]),
                               ensure_ascii=False).encode()
                    for b in range(bundles)
                ]
                patient_seconds, patient_refs = _post_bundles(client, patient_bodies)
                observation_bodies = [
                    json.dumps(_transaction([_observation(rng, rng.choice(patient_refs)) for _ in range(100)]),
                               ensure_ascii=False).encode()
                    for _ in range(bundles)
                ]
                observation_seconds, observation_refs = _post_bundles(client, observation_bodies)
                targets = [rng.choice(patient_refs + observation_refs) for _ in range(reads)]
                latencies = []
                for ref in targets:
                    start = time.perf_counter()
                    response = client.get(f"/fhir/{ref}")
                    latencies.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    count = bundles * 100
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "database": kind,
        "bundles_per_type": bundles,
        "patients_per_s": round(count / patient_seconds),
        "observations_per_s": round(count / observation_seconds),
        "resources_per_s": round(2 * count / (patient_seconds + observation_seconds)),
        "reads": reads,
        "read_p50_ms": round(quantiles[49], 2),
        "read_p95_ms": round(quantiles[94], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--bundles", type=int, default=50, help="bundles of 100 per resource type")
    parser.add_argument("--reads", type=int, default=3000)
    args = parser.parse_args()
    print(json.dumps(run(args.database, args.bundles, args.reads), ensure_ascii=False))


if __name__ == "__main__":
    main()
