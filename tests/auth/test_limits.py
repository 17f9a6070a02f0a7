"""Limits answered with clear OperationOutcomes: bundle size, request rate, query time, body size."""

from __future__ import annotations

import dataclasses
import time

import httpx
import pytest
from sqlalchemy import text

from hub.auth.ratelimit import RateLimiter
from hub.auth.roles import Role
from hub.config import Settings
from hub.errors import QueryTimeout, TooManyRequests
from hub.store.database import Database
from tests.auth.support import principal
from tests.conftest import assert_outcome, fhir_client, running_server


def _bundle(n: int) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}} for _ in range(n)]}


def test_limits_on_a_strict_server(settings: Settings, database: Database) -> None:
    strict = dataclasses.replace(settings, max_bundle_entries=5, rate_limit_per_minute=60)
    with running_server(strict, database) as url:
        with fhir_client(url) as client:
            assert client.post("", json=_bundle(5)).status_code == 200
            assert_outcome(client.post("", json=_bundle(6)), 413, contains="at most 5")
            statuses = [client.get("/Patient", params={"_summary": "count"}).status_code for _ in range(20)]
            assert statuses.count(200) >= 10 and statuses[-1] == 429
            limited = client.get("/Patient")
            assert_outcome(limited, 429, contains="retry in")
            assert int(limited.headers["retry-after"]) >= 1
        with fhir_client(url, principal(Role.APP)) as other:  # another client has its own budget
            assert other.get("/Patient").status_code == 200
    assert database.audit.flush() >= 0


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(per_minute=600)  # 10 per second, bursts of 150
    for _ in range(150):
        limiter.check("c")
    with pytest.raises(TooManyRequests):
        limiter.check("c")
    time.sleep(0.25)
    limiter.check("c")  # refilled about 2.5 requests


def test_body_over_the_limit_is_413(fhir: httpx.Client, settings: Settings) -> None:
    body = b'{"resourceType":"Patient","name":[{"text":"' + b"x" * settings.max_body_bytes + b'"}]}'
    assert_outcome(fhir.post("/Patient", content=body), 413, contains="limit")


def test_runaway_query_is_cancelled(settings: Settings, database: Database) -> None:
    quick = Database(dataclasses.replace(settings, query_timeout_seconds=1), keyring=database.protector.keyring)
    slow = ("SELECT pg_sleep(3)" if quick.engine.dialect.name == "postgresql" else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) "
            "SELECT count(*) FROM c")
    started = time.monotonic()
    try:
        with pytest.raises(QueryTimeout, match="1 s limit"):
            with quick.connection(write=True) as connection:
                connection.execute(text(slow))
        assert time.monotonic() - started < 2.5
        with quick.connection(write=True) as connection:  # the connection is usable again
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        quick.dispose()
