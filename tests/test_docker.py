"""The container files: the entrypoint script run for real (keys, database wait, migrations, the
command), and the Dockerfile and compose file read for what production needs (no Docker engine here)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hub.store.migrate import head_revision

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def run_entrypoint(tmp_path: Path, *command: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """The entrypoint with the hub's virtualenv on PATH, a data directory under ``tmp_path``."""
    environment = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path),
        "HUB_DATA_DIR": str(tmp_path / "data"), "HUB_KEY_DIR": str(tmp_path / "data" / "keys"),
        "HUB_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'hub.db'}", **env,
    }
    return subprocess.run(["sh", str(ENTRYPOINT), *command], env=environment, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


def test_the_entrypoint_migrates_then_runs_the_command(tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path, "hub", "db", "current")
    assert done.returncode == 0, done.stderr
    assert f"database: {head_revision()}" in done.stdout


def test_production_without_keys_stops_with_the_reason(tmp_path: Path) -> None:
    done = run_entrypoint(tmp_path, "hub", "db", "current", HUB_ENV="production")
    assert done.returncode == 64
    assert "missing: signing-key data-keys" in done.stderr and "HUB_GENERATE_KEYS=yes" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "data" / "keys" / "data-keys.json").exists()


def test_keys_are_never_generated_over_a_database_that_holds_data(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "hub", "db", "current").returncode == 0  # a development start migrates it
    done = run_entrypoint(tmp_path, "hub", "db", "current", HUB_ENV="production", HUB_GENERATE_KEYS="yes",
                          HUB_SIGNING_KEY_FILE=str(tmp_path / "prod" / "signing.pem"),
                          HUB_DATA_KEYS_FILE=str(tmp_path / "prod" / "data-keys.json"))
    assert done.returncode == 64 and "Restore the keys from their backup" in done.stderr
    assert not (tmp_path / "prod").exists()


def test_production_keys_are_generated_once_private_and_then_kept(tmp_path: Path) -> None:
    first = run_entrypoint(tmp_path, "hub", "db", "current", HUB_ENV="production", HUB_GENERATE_KEYS="yes")
    assert first.returncode == 0, first.stderr
    keys = tmp_path / "data" / "keys"
    signing, data_keys = keys / "signing-key.pem", keys / "data-keys.json"
    assert "back them up" in first.stderr
    for key in (signing, data_keys):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = (signing.read_bytes(), data_keys.read_bytes())
    again = run_entrypoint(tmp_path, "hub", "db", "current", HUB_ENV="production", HUB_GENERATE_KEYS="yes")
    assert again.returncode == 0 and "generated" not in again.stderr
    assert (signing.read_bytes(), data_keys.read_bytes()) == before
    assert f"database: {head_revision()}" in again.stdout


def test_an_unreachable_database_fails_after_the_wait(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run_entrypoint(tmp_path, "hub", "db", "current", HUB_DB_WAIT_SECONDS="2",
                          HUB_DATABASE_URL="postgresql+psycopg://hub:secret-pw@127.0.0.1:1/hub")
    assert done.returncode == 1 and time.monotonic() - started < 60
    assert "does not answer" in done.stderr and "waited 2 s" in done.stderr
    assert "secret-pw" not in done.stdout + done.stderr


def test_dockerfile_runs_unprivileged_with_a_healthcheck_through_the_entrypoint() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^USER hub$", text, re.M) and "useradd --system --uid 10001" in text
    assert re.search(r"^HEALTHCHECK .*\n.*/health", text, re.M)
    assert 'ENTRYPOINT ["hub-entrypoint"]' in text and "COPY docker/entrypoint.sh /usr/local/bin/hub-entrypoint" in text
    assert text.count("FROM python:3.11-slim") == 2  # slim, and no build tools in the runtime image
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which is not in the repository"


def test_compose_runs_the_hub_on_postgresql_with_volumes() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    db, hub = compose["services"]["db"], compose["services"]["hub"]
    assert db["image"] == "postgres:15" and any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert "healthcheck" in db and hub["depends_on"]["db"]["condition"] == "service_healthy"
    assert hub["environment"]["HUB_ENV"] == "production"
    assert hub["environment"]["HUB_DATABASE_URL"].startswith("postgresql+psycopg://") \
        and "@db:5432/" in hub["environment"]["HUB_DATABASE_URL"]
    assert any(v.endswith(":/data") for v in hub["volumes"])
    assert hub["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert set(compose["volumes"]) == {"pgdata", "hubdata"}
