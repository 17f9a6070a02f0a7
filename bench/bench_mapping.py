"""Mapping benchmark: the normalization hot path, and re-normalizing stored data after a decision.

    python bench/bench_mapping.py --database sqlite --resources 50000
    python bench/bench_mapping.py --database postgresql --resources 50000

Reported: the lookup of one local code in the in-memory index (the hot path of ingest),
normalizing one lab Observation (lookup, added coding, unit conversion), and after an
``approve`` decision on a code carried by ``--resources`` stored Observations, the
re-normalization rate (resources re-read, normalized, re-indexed and written as new versions).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import timeit
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_database_url  # noqa: E402
from hub.cli.coding import MAPPINGS_DIR, load_terminology  # noqa: E402
from hub.coding.mapping_index import build_index  # noqa: E402
from hub.coding.mapping_tables import read_csv  # noqa: E402
from hub.coding.normalizer import MappingNormalizer  # noqa: E402
from hub.coding.terminology import PROCESS_CACHE, Terminology  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.governance.review import Decision, decide  # noqa: E402
from hub.governance.tables import load_table  # noqa: E402
from hub.ingest.fhir_build import resource_id  # noqa: E402
from hub.registry.sources import register_source  # noqa: E402
from hub.store.conflicts import ConflictFilter, Observed  # noqa: E402
from hub.store.database import Database  # noqa: E402
from hub.store.migrate import upgrade  # noqa: E402

SOURCE = "bench"
LOCAL = f"urn:hub:code:{SOURCE}:lab-item"


def _observation(number: int, code: str, display: str, value: str, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "meta": {"source": f"urn:hub:source:{SOURCE}", "tag": [{"system": "urn:hub:institution", "code": "org-bench"}]},
        "status": "final",
        "code": {"coding": [{"system": LOCAL, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/p{number % 1000}"},
        "valueQuantity": {"value": Decimal(value), "unit": unit},
        "referenceRange": [{"low": {"value": Decimal("3.9"), "unit": unit}, "high": {"value": Decimal("6.1"),
                                                                                   "unit": unit}}],
    }


def _hot_path(database: Database) -> dict[str, float]:
    with database.fhir_service(write=False) as service:
        index = build_index(Terminology(service, PROCESS_CACHE), [SOURCE, "frontdb"])
    normalizer = MappingNormalizer(index)
    glucose = _observation(1, "GLU", "葡萄糖", "100", "mg/dL")
    wbc = _observation(1, "WBC", "白细胞计数", "6.5", "10*9/L")
    coding = wbc["code"]["coding"][0]
    runs = 200_000
    lookup = timeit.timeit(lambda: normalizer._target(wbc, coding, LOCAL, "WBC"), number=runs) / runs
    runs = 20_000
    convert = timeit.timeit(lambda: normalizer.normalize(copy.deepcopy(glucose)), number=runs) / runs
    plain = timeit.timeit(lambda: normalizer.normalize(copy.deepcopy(wbc)), number=runs) / runs
    copying = timeit.timeit(lambda: copy.deepcopy(wbc), number=runs) / runs
    normalizer.drain()
    return {"lookup_us": round(lookup * 1e6, 2), "normalize_observation_us": round((plain - copying) * 1e6, 1),
            "normalize_with_unit_conversion_us": round((convert - copying) * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--resources", type=int, default=50_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-mapping-"))
    database = Database(Settings(database_url=fresh_database_url(args.database, workdir),
                                 key_dir=str(workdir / "keys")))
    upgrade(database.engine)
    load_terminology(database)
    load_table(database, PROCESS_CACHE, "frontdb",
               read_csv((MAPPINGS_DIR / "frontdb.csv").read_text(encoding="utf-8"), "frontdb"), actor="bench")
    with database.fhir_service(write=True) as service:
        service.update("Organization", "org-bench", {"resourceType": "Organization", "id": "org-bench",
                                                        "name": "基准测试医院"})
    register_source(database, {"source_id": SOURCE, "institution": "org-bench", "system_kind": "LIS",
                               "adapter": "frontdb", "connection": "DSN=unused"})
    summary: dict[str, object] = {"database": args.database, **_hot_path(database)}

    started = time.monotonic()
    for start in range(0, args.resources, 2000):
        batch = [("Observation", resource_id(SOURCE, "bench", str(n)), _observation(n, "TG", "甘油三酯", "1.9", "mmol/L"))
                 for n in range(start, min(start + 2000, args.resources))]
        with database.fhir_service(write=True) as service:
            service.upsert_many(batch)
    summary["stored_seconds"] = round(time.monotonic() - started, 1)
    with database.conflicts(write=True) as store:
        from hub.fhir.instants import now_utc

        store.record([Observed("unmapped", LOCAL, "TG", "", "lab-item", "甘油三酯", args.resources,
                               sources=(SOURCE,), institutions=("org-bench",))], now_utc())
        conflict = store.list(ConflictFilter())[0][0]
    database.analyze_store()
    started = time.monotonic()
    result = decide(database, PROCESS_CACHE, conflict["id"], Decision(
        "approve", conflict["version"], "bench", "基准测试", {"system": "http://loinc.org", "code": "14927-8"}))
    seconds = time.monotonic() - started
    renormalized = result["changes"][0].renormalized
    summary.update({"renormalized": renormalized.updated, "renormalize_seconds": round(seconds, 1),
                    "renormalized_per_second": round(renormalized.updated / seconds)})
    print(json.dumps(summary, ensure_ascii=False))
    database.dispose()


if __name__ == "__main__":
    main()
