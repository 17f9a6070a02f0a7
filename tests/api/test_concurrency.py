"""Concurrent writers: If-Match lets exactly one win, and history never has gaps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import fhir_client, patient


def _race(server: str, pid: str, body: dict, n: int) -> list[int]:
    barrier = threading.Barrier(n)

    def attempt(i: int) -> int:
        with fhir_client(server) as client:
            changed = dict(body, name=[{"text": f"并发写入 {i}"}])
            barrier.wait()
            if_match = f'W/"{body["meta"]["versionId"]}"'
            return client.put(f"/Patient/{pid}", json=changed, headers={"If-Match": if_match}).status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(attempt, range(n)))


def test_same_if_match_from_two_threads_one_wins(server: str, fhir: httpx.Client) -> None:
    for _round in range(10):
        body = fhir.post("/Patient", json=patient()).json()
        statuses = _race(server, body["id"], body, 2)
        assert sorted(statuses) == [200, 412], statuses
        history = fhir.get(f"/Patient/{body['id']}/_history").json()
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_unconditional_concurrent_updates_leave_no_gap(server: str, fhir: httpx.Client) -> None:
    body = fhir.post("/Patient", json=patient()).json()
    pid = body["id"]
    barrier = threading.Barrier(6)

    def attempt(i: int) -> int:
        with fhir_client(server) as client:
            barrier.wait()
            codes = []
            for j in range(5):
                changed = dict(body, name=[{"text": f"写入 {i}-{j}"}])
                codes.append(client.put(f"/Patient/{pid}", json=changed).status_code)
            return max(codes)

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(attempt, range(6))) == {200}
    history = fhir.get(f"/Patient/{pid}/_history", params={"_count": 100}).json()
    versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
    assert versions == list(range(1, 32))
    assert fhir.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "31"


def test_concurrent_update_as_create_of_one_id(server: str, fhir: httpx.Client) -> None:
    barrier = threading.Barrier(4)

    def attempt(i: int) -> int:
        with fhir_client(server) as client:
            barrier.wait()
            return client.put("/Patient/race-1", json=patient(id="race-1", name=[{"text": f"患者{i}"}])).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(attempt, range(4)))
    assert statuses.count(201) == 1 and statuses.count(200) == 3, statuses
    history = fhir.get("/Patient/race-1/_history").json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == [1, 2, 3, 4]


def test_concurrent_conditional_creates_make_one_resource(server: str, fhir: httpx.Client) -> None:
    barrier = threading.Barrier(4)
    criteria = "identifier=urn:hub:mrn:org-ks-1|RACE-7"

    def attempt(_i: int) -> int:
        with fhir_client(server) as client:
            barrier.wait()
            body = patient(identifier=[{"system": "urn:hub:mrn:org-ks-1", "value": "RACE-7"}])
            return client.post("/Patient", json=body, headers={"If-None-Exist": criteria}).status_code

    for _round in range(3):
        fhir.delete("/Patient", params={"identifier": "urn:hub:mrn:org-ks-1|RACE-7"})
        with ThreadPoolExecutor(4) as pool:
            statuses = sorted(pool.map(attempt, range(4)))
        assert statuses == [200, 200, 200, 201], statuses
        assert fhir.get("/Patient", params={"identifier": "urn:hub:mrn:org-ks-1|RACE-7"}).json()["total"] == 1
