"""The `hub` command on a fresh SQLite file: migrate, load, demo (idempotent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from hub.store.migrate import head_revision

HUB = str(Path(sys.executable).with_name("hub"))


def _run(args: list[str], db_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HUB_DATABASE_URL=db_url, COLUMNS="200")
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


def test_demo_loads_the_sample_once(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = _run(["demo", "--no-serve"], db_url, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "/fhir/metadata" in first.stdout
    count = _versions(db_url)
    # the roster's Organizations, the sample bundle, the demo source's resources, the terminology
    # (11 code systems with their all-codes value sets, 7 more value sets, 2 concept maps), 3 mapping tables,
    # the golden Patients of 7 regional persons (8 source Patients: 张伟 at two institutions), the consortium's Group,
    # the recent result the 互认 example uses and the second versions of the two sample results marked HR,
    # the 7 readers of the sample reading centers (Practitioner + PractitionerRole), and the two exams of 玉山镇
    # sent to be read (ServiceRequest, ImagingStudy and the reading Task each), and the 7 indicators' Measures
    assert count == 37 + 9 + 15 + 31 + 3 + 7 + 1 + 1 + 2 + 14 + 6 + 7
    assert "8 Patient writes placed: 7 new persons, 1 automatic links" in first.stdout
    assert "Mapping tables (versions): {'frontdb': 1, 'his-pinyin': 1, 'lis-english': 1}" in first.stdout
    engine = create_engine(db_url)
    with engine.connect() as connection:  # the demo's lab results are normalized; the one unmapped item waits
        conflicts = connection.execute(text("SELECT kind, code, occurrences FROM hub_mapping_conflict")).all()
        glucose = connection.execute(text("SELECT content FROM hub_resource WHERE resource_type = 'Observation' "
                                          "AND content LIKE '%lab-item\",\"code\":\"GLU%'")).scalar_one()
    engine.dispose()
    assert [tuple(row) for row in conflicts] == [("unmapped", "TG", 1)]
    assert '"system":"http://loinc.org","code":"14749-6"' in glucose
    assert "quarantined': 1" in first.stdout  # the demo source's mistyped ID number
    second = _run(["demo", "--no-serve"], db_url, tmp_path)
    assert second.returncode == 0, second.stderr
    assert _versions(db_url) == count  # rerunning creates no new versions
