"""`hub clients`, `hub keys`, `hub audit` and the demo's credentials, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.test_cli import _run


def test_clients_create_list_disable(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'c.db'}"
    assert _run(["db", "upgrade"], db_url, tmp_path).returncode == 0
    created = _run(["clients", "create", "--name", "LIS 昆山市中医医院", "--role", "source-admin",
                    "--institution", "org-ks-tcm", "--json"], db_url, tmp_path)
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    assert client["role"] == "source-admin" and client["institutions"] == ["org-ks-tcm"]
    assert len(client["client_secret"]) >= 40 and client["auth_method"] == "client_secret_basic"
    engine = create_engine(db_url)
    with engine.connect() as connection:
        stored = " ".join(str(v) for v in connection.execute(text("SELECT * FROM hub_client")).one())
    engine.dispose()
    assert client["client_secret"] not in stored
    listed = _run(["clients", "list"], db_url, tmp_path)
    assert client["client_id"] in listed.stdout and client["client_secret"] not in listed.stdout
    refused = _run(["clients", "create", "--name", "x", "--role", "source-admin"], db_url, tmp_path)
    assert refused.returncode == 2 and "institution" in refused.stdout
    assert _run(["clients", "disable", client["client_id"]], db_url, tmp_path).returncode == 0
    assert "no" in _run(["clients", "list"], db_url, tmp_path).stdout


def test_key_commands(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'k.db'}"
    assert _run(["keys", "signing-key", "--output", str(tmp_path / "sign.pem")], db_url, tmp_path).returncode == 0
    assert (tmp_path / "sign.pem").stat().st_mode & 0o077 == 0
    assert _run(["keys", "signing-key", "--output", str(tmp_path / "sign.pem")], db_url, tmp_path).returncode == 1
    keys = tmp_path / "data-keys.json"
    assert _run(["keys", "data-keys", "--output", str(keys)], db_url, tmp_path).returncode == 0
    first = json.loads(keys.read_text())["active"]
    assert _run(["db", "upgrade"], db_url, tmp_path).returncode == 0
    rotated = _run(["keys", "rotate", "--keys-file", str(keys)], db_url, tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    ring = json.loads(keys.read_text())
    assert ring["active"] != first and set(ring["keys"]) == {first, ring["active"]}
    assert _run(["audit", "purge"], db_url, tmp_path).returncode == 0


def test_command_line_loads_are_audited(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'a.db'}"
    assert _run(["db", "upgrade"], db_url, tmp_path).returncode == 0
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-cli"}, "request": {"method": "PUT", "url": "Patient/p-cli"}}]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    assert _run(["load", str(path)], db_url, tmp_path).returncode == 0
    engine = create_engine(db_url)
    with engine.connect() as connection:
        events = connection.execute(text("SELECT client_id, subtype, outcome FROM hub_audit_event")).all()
        patients = connection.execute(text("SELECT patient_id FROM hub_audit_patient")).scalars().all()
    engine.dispose()
    assert len(events) == 1 and events[0].client_id.startswith("cli:")
    assert (events[0].subtype, events[0].outcome) == ("transaction", "0") and patients == ["p-cli"]
