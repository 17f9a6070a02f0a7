"""The `hub` command on a fresh SQLite file: migrate, load (the demo: tests/test_demo.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from hub.store.migrate import head_revision

HUB = str(Path(sys.executable).with_name("hub"))


def _run(args: list[str], db_url: str, cwd: Path, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HUB_DATABASE_URL=db_url, COLUMNS="200", **(extra or {}))
    return subprocess.run([HUB, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _versions(db_url: str) -> int:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM hub_resource_version")).scalar_one()
    engine.dispose()
    return int(count)


def test_db_upgrade_and_load(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgraded = _run(["db", "upgrade"], db_url, tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert head_revision() in upgraded.stdout
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"text": "李四"}]},
         "request": {"method": "POST", "url": "Patient"}}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False), encoding="utf-8")
    loaded = _run(["load", str(path)], db_url, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "201 Created" in loaded.stdout
    assert _versions(db_url) == 1
    path.write_text('{"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {}}]}')
    refused = _run(["load", str(path)], db_url, tmp_path)
    assert refused.returncode == 1 and "Not loaded" in refused.stdout


def test_a_keyring_that_cannot_decrypt_is_one_clear_line(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'k.db'}"
    first, elsewhere = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    elsewhere.mkdir()
    assert _run(["db", "upgrade"], db_url, first).returncode == 0
    assert _run(["registry", "load", str(Path(__file__).parents[1] / "hub" / "samples" / "kunshan-roster.yaml")],
                db_url, first).returncode == 0
    env = {"HUB_SOURCE_CONNECTION": "DRIVER={SQLite3};DATABASE=/nonexistent.db;"}
    added = _run(["sources", "add", "--id", "k-src", "--institution", "org-ks-1", "--kind", "HIS",
                  "--adapter", "frontdb"], db_url, first, env)
    assert added.returncode == 0, added.stderr
    listed = _run(["sources", "list"], db_url, elsewhere)  # another directory: another development keyring
    assert listed.returncode == 1
    assert "cannot decrypt" in listed.stderr and "var/keys" in listed.stderr and "Traceback" not in listed.stderr
