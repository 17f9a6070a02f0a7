"""Driving Bulk Data exports as a client does: kick off, poll, download; and a background worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson

from hub.config import Settings
from hub.exports.jobs import ExportJobs
from hub.exports.worker import ExportWorker
from hub.store.database import Database

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


@contextmanager
def export_worker(database: Database, settings: Settings) -> Iterator[ExportWorker]:
    """The export worker of the hub, running in the background for the test."""
    worker = ExportWorker(ExportJobs(database, settings), interval=0.05)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def kick_off(client: httpx.Client, path: str = "/$export", **params: str) -> str:
    """Start an export; its status URL."""
    response = client.get(path, params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    return response.headers["Content-Location"]


def wait(client: httpx.Client, status_url: str, timeout: float = 120) -> dict[str, Any]:
    """Poll until the export is done; its manifest."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(status_url, headers={"Accept": "application/json"})
        if response.status_code == 200:
            return response.json()  # type: ignore[no-any-return]
        assert response.status_code == 202, response.text
        assert response.headers["X-Progress"]
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.05)


def download(client: httpx.Client, url: str) -> list[dict[str, Any]]:
    """The resources of one NDJSON file."""
    response = client.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    return [orjson.loads(line) for line in response.content.splitlines()]


def export(client: httpx.Client, path: str = "/$export", **params: str) -> tuple[dict[str, Any], list[dict]]:
    """Kick off, wait and download every output file: the manifest and all exported resources."""
    manifest = wait(client, kick_off(client, path, **params))
    resources: list[dict] = []
    for item in manifest["output"]:
        found = download(client, item["url"])
        assert len(found) == item["count"] and {r["resourceType"] for r in found} == {item["type"]}
        resources.extend(found)
    return manifest, resources


def keys(resources: list[dict]) -> list[tuple[str, str]]:
    """``(type, id)`` of each exported resource, sorted (a repeat shows twice)."""
    return sorted((r["resourceType"], r["id"]) for r in resources)
