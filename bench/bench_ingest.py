"""Ingest benchmark: lab results in a real front-end database, read over ODBC, stored with their index rows.

    python bench/bench_ingest.py --database postgresql --results 1000000
    python bench/bench_ingest.py --database sqlite --results 1000000 --reuse-source

The source (MariaDB by default, over the MariaDB ODBC driver) holds ``results/10`` lab
reports of 10 results each and ``results/50`` patients. The hub database is created
fresh. Reported: resources stored per second end to end (read, convert, check, build,
index, write, commit), the source read rate alone, and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.base import Position  # noqa: E402
from bench.common import fresh_database_url  # noqa: E402
from bench.ingest_data import fill  # noqa: E402
from hub.cli.coding import load_mapping_dir, load_terminology  # noqa: E402
from hub.config import Settings  # noqa: E402
from hub.empi.engine import Engine, RunStats  # noqa: E402
from hub.ingest.pipeline import IngestOptions, IngestRun, RunCounts  # noqa: E402
from hub.registry.sources import open_adapter, register_source  # noqa: E402
from hub.store.database import Database  # noqa: E402
from hub.store.migrate import upgrade  # noqa: E402

SOURCES = {
    "mariadb": "DRIVER={MariaDB Unicode};SERVER=127.0.0.1;PORT=3306;UID=root;PWD=;CHARSET=utf8mb4;",
    "postgresql": "DRIVER={PostgreSQL Unicode};SERVER=127.0.0.1;PORT=5432;UID=postgres;",
}
SOURCE_DB = "hub_bench_src"


def _source(kind: str, results: int, reuse: bool) -> str:
    import pyodbc

    admin = SOURCES[kind] + ("DATABASE=mysql;" if kind == "mariadb" else "DATABASE=postgres;")
    connection = SOURCES[kind] + f"DATABASE={SOURCE_DB};"
    if reuse:
        return connection
    with pyodbc.connect(admin, autocommit=True) as raw:
        raw.execute(f"DROP DATABASE IF EXISTS {SOURCE_DB}")
        raw.execute(f"CREATE DATABASE {SOURCE_DB}")
    started = time.monotonic()
    fill(connection, kind, patients=max(results // 50, 10), reports=results // 10)
    print(f"source filled with {results} results in {time.monotonic() - started:.0f} s", flush=True)
    return connection


def _read_rate(database: Database, source_id: str) -> float:
    """Rows per second of reading the lab reports (with their results) alone."""
    with database.sources(write=False) as store:
        source = store.get(source_id)
    assert source is not None
    adapter = open_adapter(source)
    started, rows = time.monotonic(), 0
    for page in adapter.read("LabReport", Position(), 500):
        rows += sum(1 + len(row.raw.get("results") or ()) for row in page)
    adapter.close()
    return rows / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--source", choices=tuple(SOURCES), default="mariadb")
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=200, help="lab reports per batch (x11 resources)")
    parser.add_argument("--reuse-source", action="store_true", help="keep the source filled by an earlier run")
    parser.add_argument("--mapping", action="store_true",
                        help="load the terminology and mappings/frontdb.csv first (normalization on the hot path)")
    parser.add_argument("--empi", action="store_true",
                        help="run the master patient index after every page (as the API's worker keeps up)")
    parser.add_argument("--rerun", action="store_true",
                        help="then forget the watermark and read everything again (every resource unchanged)")
    args = parser.parse_args()

    connection = _source(args.source, args.results, args.reuse_source)
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-ingest-"))
    url = fresh_database_url(args.database, workdir)
    database = Database(Settings(database_url=url, key_dir=str(workdir / "keys")))
    upgrade(database.engine)
    with database.fhir_service(write=True) as service:
        service.update("Organization", "org-bench", {"resourceType": "Organization", "id": "org-bench",
                                                        "name": "基准测试医院"})
    if args.mapping:
        load_terminology(database)
        load_mapping_dir(database, actor="bench")
    source = register_source(database, {"source_id": "bench", "institution": "org-bench", "system_kind": "LIS",
                                        "adapter": "frontdb", "connection": connection})
    read_rate = _read_rate(database, "bench")
    print(f"source read alone: {read_rate:.0f} rows/s", flush=True)

    last = [time.monotonic()]
    engine = Engine(database) if args.empi else None
    placed = RunStats()

    def progress(kind: str, counts: RunCounts) -> None:
        if engine is not None:
            placed.add(engine.run(batch=500))
        if time.monotonic() - last[0] > 30:
            last[0] = time.monotonic()
            print(f"  {kind}: {counts.as_dict()}", flush=True)

    started = time.monotonic()
    result = IngestRun(database, source, open_adapter, options=IngestOptions(page_size=args.page_size),
                       progress=progress).run()
    if engine is not None:
        placed.add(engine.run(batch=500))
    seconds = time.monotonic() - started if engine is not None else result.seconds
    written = result.counts.created + result.counts.updated
    summary = {
        "database": args.database, "source": args.source, "results": args.results, "mapping": args.mapping,
        "status": result.status,
        "resources": written, "seconds": round(seconds, 1),
        "resources_per_second": round(written / seconds), "source_rows_per_second": round(read_rate),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "validated_sample": result.validated, "counts": result.counts.as_dict(),
        "empi": placed.as_dict() if engine is not None else None,
    }
    if args.rerun:
        with database.ingest_state(write=True) as state:
            state.reset_positions("bench")
        again = IngestRun(database, source, open_adapter, options=IngestOptions(page_size=args.page_size)).run()
        summary["rerun"] = {"seconds": round(again.seconds, 1), "counts": again.counts.as_dict(),
                            "resources_per_second": round(again.counts.unchanged / again.seconds)}
    print(json.dumps(summary, ensure_ascii=False))
    database.dispose()


if __name__ == "__main__":
    main()
