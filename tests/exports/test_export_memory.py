"""A 200,000-resource export keeps the hub's memory flat: a real ``hub serve`` process runs the job
in its background worker, the client downloads every file, and the process's peak RSS stays low."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson

from hub.auth.principal import Principal
from hub.auth.roles import Role, scope_ceiling
from hub.config import Settings
from hub.store.database import Database
from hub.store.index_rows import insert_rows
from hub.store.tables import resource
from tests.conftest import bearer
from tests.exports.support import ASYNC
from tests.subscriptions.support import free_port

RESOURCES = 200_000
RSS_LIMIT_MB = 300
#: What the export itself may add to the hub's peak (the hub at rest holds its dictionaries and models).
RSS_GROWTH_MB = 64
APP = Principal("memory-app", Role.APP, scope_ceiling(Role.APP))


def _store(database: Database, count: int) -> None:
    """``count`` lab Observations as the store keeps them (an export reads the resource table only)."""
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with database.connection(write=True) as connection:
        for start in range(0, count, 20_000):
            rows = []
            for n in range(start, min(count, start + 20_000)):
                content = orjson.dumps({
                    "resourceType": "Observation", "id": f"obs-{n}",
                    "meta": {"versionId": "1", "lastUpdated": "2026-01-02T03:04:05.000Z",
                             "tag": [{"system": "urn:hub:institution", "code": "org-ks-1"}]},
                    "status": "final", "category": [{"coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "葡萄糖"}],
                             "text": "空腹血糖"},
                    "subject": {"reference": f"Patient/p-{n % 5000}"}, "effectiveDateTime": "2026-01-02T08:00:00+08:00",
                    "valueQuantity": {"value": 5.6, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                      "code": "mmol/L"},
                }).decode()
                rows.append({"resource_type": "Observation", "res_id": f"obs-{n}", "version_id": 1,
                             "last_updated": moment, "deleted": False, "content": content})
            insert_rows(connection, resource, rows)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_200k_resource_export_keeps_rss_under_300_mb(settings: Settings, database: Database,
                                                      tmp_path: Path) -> None:
    _store(database, RESOURCES)
    port = free_port()
    env = {**os.environ, "HUB_DATABASE_URL": settings.database_url, "HUB_KEY_DIR": settings.key_dir,
           "HUB_EXPORT_DIR": str(tmp_path / "exports"), "HUB_EMPI_WORKER": "off", "HUB_SUBSCRIPTION_WORKER": "off",
           "HUB_TOKEN_LIFETIME_SECONDS": "3600"}
    hub = Path(sys.executable).with_name("hub")
    process = subprocess.Popen([str(hub), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "hub serve did not start"
            time.sleep(0.2)
        before = _peak_rss_mb(process.pid)
        with httpx.Client(base_url=f"{base}/fhir", headers=bearer(APP), timeout=120) as client:
            started = client.get("/$export?_type=Observation", headers=ASYNC)  # not the hub's own Measures
            assert started.status_code == 202, started.text
            status_url = started.headers["Content-Location"]
            while (answer := client.get(status_url)).status_code == 202:
                assert time.monotonic() < deadline + 600, "the export did not finish"
                time.sleep(0.5)
            assert answer.status_code == 200, answer.text
            outputs = answer.json()["output"]
            lines = 0
            for item in outputs:
                with client.stream("GET", item["url"]) as response:
                    assert response.status_code == 200
                    for line in response.iter_lines():
                        if line:
                            lines += 1
        assert lines == RESOURCES == sum(item["count"] for item in outputs)
        assert {item["type"] for item in outputs} == {"Observation"} and len(outputs) == 2  # 100,000 per file
        peak = _peak_rss_mb(process.pid)
        print(f"export of {RESOURCES:,} resources: hub peak RSS {before:.0f} MB before, {peak:.0f} MB after")
        assert peak < RSS_LIMIT_MB, f"peak RSS {peak:.0f} MB"
        assert peak - before < RSS_GROWTH_MB, f"the export grew the hub from {before:.0f} to {peak:.0f} MB"
    finally:
        process.terminate()
        process.wait(timeout=30)
