"""Shared set-up of the benchmarks: a fresh database of each kind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from hub.store.database import Database

#: libpq connection string of the PostgreSQL server (an admin database), overridable.
PG_ADMIN = os.environ.get("HUB_BENCH_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def fresh_database_url(kind: str, workdir: Path, name: str = "hub_bench") -> str:
    """A SQLAlchemy URL of an empty database: a SQLite file in ``workdir``, or PostgreSQL ``name`` recreated."""
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
        user, host, port = conn.info.user, conn.info.host, conn.info.port
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


def existing_database_url(kind: str, workdir: Path, name: str = "hub_bench") -> str:
    """The SQLAlchemy URL of the database :func:`fresh_database_url` made earlier, left as it is."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        if not path.exists():
            raise FileNotFoundError(f"no benchmark database at {path}: run once without --reuse")
        return f"sqlite:///{path}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            raise LookupError(f"no {name} database: run once without --reuse")
        user, host, port = conn.info.user, conn.info.host, conn.info.port
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


def server_env(url: str) -> dict[str, str]:
    """The environment of a benchmarked hub: its database, tokens that outlive the run, and a
    rate limit high enough never to refuse (the limiter still runs)."""
    return {**os.environ, "HUB_DATABASE_URL": url, "HUB_TOKEN_LIFETIME_SECONDS": "3600",
            "HUB_RATE_LIMIT_PER_MINUTE": "1000000000"}


def admin_headers(hub: str, base: str, env: dict[str, str]) -> dict[str, str]:
    """Register an admin client with ``hub clients create`` and return its bearer header for ``base``."""
    import json
    import subprocess

    import httpx

    created = subprocess.run([hub, "clients", "create", "--name", "benchmark", "--role", "admin", "--json"],
                             env=env, check=True, capture_output=True, text=True)
    client = json.loads(created.stdout)
    response = httpx.post(f"{base}/auth/token", auth=(client["client_id"], client["client_secret"]),
                          data={"grant_type": "client_credentials"}, timeout=60)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def store_resources(database: Database, resources: Iterable[tuple[str, str, dict[str, Any]]], batch: int) -> int:
    """Write ``(type, id, resource)`` through the FHIR service in transactions of ``batch`` (every index row), the
    planner statistics kept current as the load grows, progress printed every 100,000; how many were written."""
    started = time.monotonic()
    written = 0
    pending: list[tuple[str, str, dict[str, Any]]] = []

    def flush() -> None:
        nonlocal written
        with database.fhir_service(write=True) as service:
            service.upsert_many(pending)
        if written < 20_000:  # a first ANALYZE early: the empty tables' statistics mislead the first lookups
            database.analyze_store()
        written += len(pending)
        pending.clear()
        if written % 100_000 < batch:  # planner statistics as the load grows (as ingest keeps them)
            database.analyze_store()
            print(f"  stored {written:,} resources ({written / (time.monotonic() - started):,.0f}/s)", flush=True)

    for entry in resources:
        pending.append(entry)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    database.analyze_store()
    return written
