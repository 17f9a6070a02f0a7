"""Shared set-up of the benchmarks: a fresh database of each kind."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

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
