"""Benchmark: one ingest-style transaction of conditional creates and conditional references.

N Patients, each ``POST`` with ``If-None-Exist: identifier=…``, and N Observations whose
subject is the conditional reference ``Patient?identifier=…`` — the shape a source
adapter sends. Runs in-process (no HTTP) against a fresh database, twice: the first run
creates everything, the second matches everything (200s, no new Patients)::

    .venv/bin/python bench/bench_conditional_bundle.py --database sqlite
    .venv/bin/python bench/bench_conditional_bundle.py --database postgresql
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import fresh_database_url

from hub.config import Settings
from hub.fhir import jsonio
from hub.fhir.transaction import process_bundle
from hub.store.database import Database
from hub.store.migrate import upgrade

SYSTEM = "urn:hub:mrn:org-ks-1"


def _bundle(n: int) -> bytes:
    entries = []
    for i in range(n):
        entries.append({
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012d}",
            "resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"MRN{i:07d}"}],
                         "name": [{"text": "测试患者"}], "gender": "female"},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|MRN{i:07d}"},
        })
        entries.append({
            "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "空腹血糖"},
                         "subject": {"reference": f"Patient?identifier={SYSTEM}|MRN{i:07d}"},
                         "valueQuantity": {"value": 5.6, "unit": "mmol/L"}},
            "request": {"method": "POST", "url": "Observation"},
        })
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--patients", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = fresh_database_url(args.database, Path(tmp))
        database = Database(Settings(database_url=url))
        upgrade(database.engine)
        raw = _bundle(args.patients)
        for label in ("first run (creates)", "second run (matches)"):
            start = time.perf_counter()
            with database.fhir_service(write=True) as service:
                result = process_bundle(service, jsonio.loads(raw), "", "minimal")
            seconds = time.perf_counter() - start
            statuses = {e["response"]["status"] for e in result["entry"][::2]}
            print(json.dumps({"database": args.database, "run": label, "entries": 2 * args.patients,
                              "seconds": round(seconds, 2), "entries_per_s": round(2 * args.patients / seconds),
                              "patient_statuses": sorted(statuses)}, ensure_ascii=False))
        database.dispose()


if __name__ == "__main__":
    main()
