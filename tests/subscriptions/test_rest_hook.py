"""R4 rest-hook Subscriptions: criteria matched after commit, notifications to a real local HTTP receiver,
retries with backoff, ``error`` after repeated failure, the delivery log, and only what the owner may read."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from hub.auth.roles import Role
from hub.fhir.subscriptions import SUBSCRIBER_TAG
from hub.store.database import Database
from hub.subscriptions.delivery import Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher
from hub.subscriptions.worker import SubscriptionWorker
from tests.auth.support import tagged
from tests.conftest import assert_outcome, fhir_client
from tests.subscriptions.support import Clock, free_port, owner, receiver, subscription

GLUCOSE = "http://loinc.org|2345-7"


def observation(code: str = "2345-7", value: float = 5.6, **extra: object) -> dict:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                              "code": "mmol/L"}, **extra}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def machinery(database: Database, clock: Clock, **options: float) -> tuple[SubscriptionMatcher, Deliverer]:
    return SubscriptionMatcher(database, clock=clock), Deliverer(database, clock=clock, **options)


def deliveries(server: str, principal: object, subscription_id: str, **params: str) -> dict:
    with fhir_client(server, principal) as client:  # type: ignore[arg-type]
        response = client.get(f"{server}/subscriptions/{subscription_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_subscription_the_hub_cannot_serve_is_refused(server: str, database: Database) -> None:
    app = owner(database)
    with fhir_client(server, app) as client:
        ok = subscription("http://127.0.0.1:9/hook", f"Observation?code={GLUCOSE}")
        cases = [
            ({**ok, "channel": {"type": "websocket"}}, 400, "rest-hook"),
            ({**ok, "channel": {"type": "rest-hook", "endpoint": "ftp://x/y"}}, 400, "http(s)"),
            ({**ok, "channel": {**ok["channel"], "payload": "application/fhir+xml"}}, 400, "payload"),
            ({**ok, "channel": {**ok["channel"], "header": ["no colon"]}}, 400, "Name: value"),
            ({**ok, "channel": {**ok["channel"], "header": ["X-Org: 昆山"]}}, 400, "printable ASCII"),
            ({**ok, "channel": {**ok["channel"], "header": ["Host: evil.example"]}}, 400, "may not set Host"),
            ({**ok, "channel": {"type": "rest-hook", "endpoint": "http://[::1/x"}}, 400, "http(s)"),
            ({**ok, "channel": {"type": "rest-hook", "endpoint": "http://h:99999/x"}}, 400, "http(s)"),
            ({**ok, "criteria": "Nonsense?code=1"}, 400, "resource type"),
            ({**ok, "criteria": "Observation?colour=red"}, 400, "colour"),
            ({**ok, "criteria": "Observation?code=x&_sort=date"}, 400, "criteria only"),
            ({**ok, "status": "error"}, 400, "status"),
        ]
        for body, status, words in cases:
            assert_outcome(client.post("/Subscription", json=body), status, contains=words)
        created = client.post("/Subscription", json=ok)
        assert created.status_code == 201, created.text
        tags = created.json()["meta"]["tag"]
        assert {"system": SUBSCRIBER_TAG, "code": app.client_id} in tags
        # A criteria of a type alone watches every resource of it.
        assert client.post("/Subscription", json={**ok, "criteria": "Task"}).status_code == 201


def test_id_only_notification_for_matching_writes_after_commit(
        server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, deliverer = machinery(database, clock)
    with receiver() as endpoint, fhir_client(server, app) as client, fhir_client(server) as data:
        sub = client.post("/Subscription", json=subscription(endpoint.url, f"Observation?code={GLUCOSE}")).json()
        matching = data.post("/Observation", json=observation()).json()
        data.post("/Observation", json=observation(code="718-7"))  # another item: no notification
        assert matcher.run_once().deliveries == 1
        assert deliverer.run_once().sent == 1
        assert client.get(f"/Subscription/{sub['id']}").json()["status"] == "active"
        (request,) = endpoint.requests
        assert request.method == "POST" and request.path == "/hook" and request.body == b""
        assert request.headers["x-hub-resource"] == f"Observation/{matching['id']}/_history/1"
        assert request.headers["x-hub-subscription"] == f"Subscription/{sub['id']}"
        # An update that still matches is a new notification; nothing is sent twice.
        data.put(f"/Observation/{matching['id']}", json={**observation(value=6.1), "id": matching["id"]})
        matcher.run_once()
        deliverer.run_once()
        assert deliverer.run_once().sent == 0
        assert [r.headers["x-hub-resource"] for r in endpoint.requests][-1].endswith("/_history/2")
        assert len(endpoint.requests) == 2
    log = deliveries(server, app, sub["id"])
    assert log["total"] == 2 and log["status"] == "active"
    assert [(d["status"], d["attempts"], d["httpStatus"]) for d in log["deliveries"]] == [("delivered", 1, 200)] * 2
    assert log["deliveries"][0]["resource"] == f"Observation/{matching['id']}/_history/2"


def test_full_resource_payload_is_put_with_the_configured_headers(
        server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, deliverer = machinery(database, clock)
    with receiver() as endpoint, fhir_client(server, app) as client, fhir_client(server) as data:
        client.post("/Subscription", json=subscription(
            endpoint.url, "Observation?value-quantity=gt7", payload="application/fhir+json",
            headers=("Authorization: Bearer site-token-1", "X-Site: yushan")))
        high = data.post("/Observation", json=observation(value=9.8)).json()
        data.post("/Observation", json=observation(value=5.0))
        matcher.run_once()
        assert deliverer.run_once().sent == 1
    (request,) = endpoint.requests
    assert request.method == "PUT" and request.path == f"/hook/Observation/{high['id']}"
    assert request.headers["authorization"] == "Bearer site-token-1" and request.headers["x-site"] == "yushan"
    assert request.headers["content-type"].startswith("application/fhir+json")
    assert orjson.loads(request.body) == high


def test_a_rolled_back_transaction_notifies_nobody(server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, deliverer = machinery(database, clock)
    with receiver() as endpoint, fhir_client(server, app) as client, fhir_client(server) as data:
        client.post("/Subscription", json=subscription(endpoint.url, f"Observation?code={GLUCOSE}"))
        failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(), "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation", "status": "bogus"}, "request": {"method": "POST",
                                                                                         "url": "Observation"}}]}
        assert data.post("", json=failing).status_code == 400
        assert matcher.run_once().events == 0
        assert deliverer.run_once().sent == 0
        committed = {**failing, "entry": failing["entry"][:1]}
        assert data.post("", json=committed).status_code == 200
        assert matcher.run_once().deliveries == 1
        assert deliverer.run_once().sent == 1
    assert len(endpoint.requests) == 1


def test_retried_with_backoff_while_the_endpoint_is_down(server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, deliverer = machinery(database, clock, retry_seconds=30, max_attempts=5)
    port = free_port()  # nothing listens yet
    with fhir_client(server, app) as client, fhir_client(server) as data:
        sub = client.post("/Subscription", json=subscription(f"http://127.0.0.1:{port}/hook", "Observation")).json()
        written = data.post("/Observation", json=observation()).json()
    matcher.run_once()
    first = deliverer.run_once()
    assert (first.sent, first.failed_attempts) == (0, 1)
    (entry,) = deliveries(server, app, sub["id"])["deliveries"]
    assert entry["status"] == "pending" and entry["attempts"] == 1 and "could not be reached" in entry["error"]
    with receiver(port) as endpoint:
        clock.advance(10)  # before the backoff: not tried again
        assert deliverer.run_once().sent == 0 and not endpoint.requests
        clock.advance(25)
        assert deliverer.run_once().sent == 1
    assert endpoint.requests[0].headers["x-hub-resource"] == f"Observation/{written['id']}/_history/1"
    (entry,) = deliveries(server, app, sub["id"])["deliveries"]
    assert (entry["status"], entry["attempts"], entry["httpStatus"], entry["error"]) == ("delivered", 2, 200, None)


def test_repeated_failure_puts_the_subscription_in_error(server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, deliverer = machinery(database, clock, retry_seconds=1, max_attempts=3)
    with receiver() as endpoint, fhir_client(server, app) as client, fhir_client(server) as data:
        endpoint.status = 503
        sub = client.post("/Subscription", json=subscription(endpoint.url, "Observation")).json()
        data.post("/Observation", json=observation())
        data.post("/Observation", json=observation(value=7.0))
        matcher.run_once()
        for _attempt in range(3):
            deliverer.run_once()
            clock.advance(3600)
        assert len(endpoint.requests) == 3  # the second notification waits behind the first
        stored = client.get(f"/Subscription/{sub['id']}").json()
        assert stored["status"] == "error" and "HTTP 503" in stored["error"] and "3 attempt" in stored["error"]
        log = deliveries(server, app, sub["id"])["deliveries"]
        assert sorted(d["status"] for d in log) == ["dropped", "failed"]
        # An errored Subscription is not watched; set back to requested, it is again.
        data.post("/Observation", json=observation(value=8.0))
        assert matcher.run_once().deliveries == 0
        endpoint.status = 200
        client.put(f"/Subscription/{sub['id']}", json={**stored, "status": "requested"})
        data.post("/Observation", json=observation(value=8.5))
        assert matcher.run_once().deliveries == 1
        assert deliverer.run_once().sent == 1
    assert deliveries(server, app, sub["id"], status="delivered")["total"] == 1


def test_notifications_carry_only_what_the_owner_may_read(server: str, database: Database, clock: Clock) -> None:
    with database.fhir_service(write=True) as service:
        for org in ("org-a", "org-b"):
            service.update("Organization", org, {"resourceType": "Organization", "id": org, "name": org})
    site = owner(database, Role.SOURCE_ADMIN, institutions=["org-a"])
    admin = owner(database, Role.ADMIN)
    matcher, deliverer = machinery(database, clock)
    with receiver() as endpoint, fhir_client(server, site) as client, fhir_client(server, admin) as hub_admin:
        sub = client.post("/Subscription", json=subscription(endpoint.url, "Observation")).json()
        own = hub_admin.post("/Observation", json=tagged(observation(), "org-a")).json()
        hub_admin.post("/Observation", json=tagged(observation(), "org-b"))
        assert matcher.run_once().deliveries == 1
        deliverer.run_once()
        assert [r.headers["x-hub-resource"] for r in endpoint.requests] == [f"Observation/{own['id']}/_history/1"]
        # The log is the owner's (and the administrators'); another client does not learn it exists.
        assert deliveries(server, admin, sub["id"])["total"] == 1
        other = owner(database)
        with fhir_client(server, other) as stranger:
            refused = stranger.get(f"{server}/subscriptions/{sub['id']}/deliveries")
        assert_outcome(refused, 404)


def test_a_subscription_past_its_end_goes_off(server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher, _deliverer = machinery(database, clock)
    with fhir_client(server, app) as client, fhir_client(server) as data:
        sub = client.post("/Subscription", json=subscription(
            "http://127.0.0.1:9/hook", "Observation", end="2020-01-01T00:00:00+08:00")).json()
        data.post("/Observation", json=observation())
        assert matcher.run_once().deliveries == 0
        assert client.get(f"/Subscription/{sub['id']}").json()["status"] == "off"


def test_the_worker_notifies_within_a_second_of_the_commit(server: str, database: Database) -> None:
    app = owner(database)
    worker = SubscriptionWorker(SubscriptionMatcher(database), Deliverer(database), interval=0.1)
    with receiver() as endpoint, fhir_client(server, app) as client, fhir_client(server) as data:
        client.post("/Subscription", json=subscription(endpoint.url, "Task?status=completed",
                                                       payload="application/fhir+json"))
        worker.start()
        try:
            task = {"resourceType": "Task", "status": "completed", "intent": "order"}
            started = time.monotonic()
            written = data.post("/Task", json=task).json()
            assert endpoint.arrived.wait(10), "no notification arrived"
            elapsed = time.monotonic() - started
        finally:
            worker.stop()
    assert orjson.loads(endpoint.requests[0].body)["id"] == written["id"]
    assert elapsed < 5


def test_delivery_log_refuses_bad_paging(server: str, database: Database) -> None:
    app = owner(database)
    with fhir_client(server, app) as client:
        sub = client.post("/Subscription", json=subscription("http://127.0.0.1:9/hook", "Observation")).json()
    with httpx.Client(headers=fhir_client(server, app).headers) as raw:
        assert_outcome(raw.get(f"{server}/subscriptions/{sub['id']}/deliveries?count=0"), 400)
        assert_outcome(raw.get(f"{server}/subscriptions/{sub['id']}/deliveries?status=lost"), 400)
        assert_outcome(raw.get(f"{server}/subscriptions/no-such/deliveries"), 404)


def test_a_client_sees_and_changes_only_its_own_subscriptions(server: str, database: Database) -> None:
    mine, other = owner(database), owner(database)
    admin = owner(database, Role.ADMIN)
    with fhir_client(server, mine) as client, fhir_client(server, other) as stranger, \
            fhir_client(server, admin) as hub_admin:
        sub = client.post("/Subscription", json=subscription(
            "https://emr.example.cn/hook", "Observation", headers=("Authorization: Bearer secret-of-mine",))).json()
        assert_outcome(stranger.get(f"/Subscription/{sub['id']}"), 404)
        assert stranger.get("/Subscription").json()["total"] == 0
        assert stranger.get("", params={"_type": "Subscription"}).json()["total"] == 0
        assert "secret-of-mine" not in stranger.get("", params={"_type": "Subscription,Organization"}).text
        assert "secret-of-mine" not in stranger.get("/Subscription/_history").text
        assert_outcome(stranger.put(f"/Subscription/{sub['id']}", json={**sub, "status": "off"}), 403)
        stranger.delete(f"/Subscription/{sub['id']}")  # nothing there for it: nothing deleted
        assert client.get(f"/Subscription/{sub['id']}").json()["status"] == "requested"
        assert client.get("/Subscription").json()["total"] == 1
        # An administrator sees every client's, and editing one leaves its owner in place.
        edited = hub_admin.put(f"/Subscription/{sub['id']}", json={**sub, "status": "off"})
        assert edited.status_code == 200, edited.text
        assert {"system": SUBSCRIBER_TAG, "code": mine.client_id} in edited.json()["meta"]["tag"]
        assert client.get(f"/Subscription/{sub['id']}").json()["status"] == "off"


def test_endpoints_outside_the_allowed_ones_are_refused(server: str, database: Database, clock: Clock) -> None:
    app = owner(database)
    matcher = SubscriptionMatcher(database, clock=clock, endpoints=("http://127.0.0.1:8/hooks",))
    with fhir_client(server, app) as client, fhir_client(server) as data:
        inside = client.post("/Subscription", json=subscription("http://127.0.0.1:8/hooks/reports", "Task")).json()
        outside = client.post("/Subscription", json=subscription("http://127.0.0.1:8/hooksevil", "Task")).json()
        data.post("/Task", json={"resourceType": "Task", "status": "requested", "intent": "order"})
        assert matcher.run_once().deliveries == 1
        assert client.get(f"/Subscription/{inside['id']}").json()["status"] == "active"
        refused = client.get(f"/Subscription/{outside['id']}").json()
        assert refused["status"] == "error" and "HUB_SUBSCRIPTION_ENDPOINTS" in refused["error"]


def test_a_notification_that_breaks_the_sender_keeps_the_others_going(
        server: str, database: Database, clock: Clock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "broken.example":
            raise RuntimeError("a bug in the sending path")
        return httpx.Response(204)

    app = owner(database)
    matcher = SubscriptionMatcher(database, clock=clock)
    deliverer = Deliverer(database, clock=clock, transport=httpx.MockTransport(answer))
    with fhir_client(server, app) as client, fhir_client(server) as data:
        broken = client.post("/Subscription", json=subscription("http://broken.example/hook", "Task")).json()
        working = client.post("/Subscription", json=subscription("http://working.example/hook", "Task")).json()
        data.post("/Task", json={"resourceType": "Task", "status": "requested", "intent": "order"})
    matcher.run_once()
    stats = deliverer.run_once()
    assert (stats.sent, stats.failed_attempts) == (1, 1)
    (failed,) = deliveries(server, app, broken["id"])["deliveries"]
    assert failed["status"] == "pending" and failed["attempts"] == 1 and "reference" in failed["error"]
    assert deliveries(server, app, working["id"])["deliveries"][0]["status"] == "delivered"
