"""Benchmark: rest-hook Subscriptions — what watching costs a write, how fast writes are matched and
notifications sent.

Writes N lab Observations (in-process, transactions of 500, with every index row) after a
warm-up of as many: with no Subscription, then with S active Subscriptions watching Observation
(different codes, one matching everything), timing the writes; then drains the queued events with the matcher
and sends the notifications to a real local HTTP receiver (id-only POSTs), timing both. Run
by hand::

    .venv/bin/python bench/bench_subscriptions.py --database sqlite
    .venv/bin/python bench/bench_subscriptions.py --database postgresql --observations 20000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import fresh_database_url
from search_data import LABS, make_observation

from hub.auth.clients import new_client
from hub.auth.roles import Role
from hub.config import Settings
from hub.fhir.access import Access
from hub.store.database import Database
from hub.store.migrate import upgrade
from hub.subscriptions.delivery import Deliverer
from hub.subscriptions.matcher import SubscriptionMatcher

BATCH = 500


def write(database: Database, first: int, count: int) -> float:
    """Store ``count`` Observations; seconds."""
    started = time.monotonic()
    for start in range(first, first + count, BATCH):
        with database.fhir_service(write=True) as service:
            service.upsert_many([("Observation", f"ob-{n}", {**make_observation(n % 5000 + 1, n), "id": f"ob-{n}"})
                                 for n in range(start, min(first + count, start + BATCH))])
    return time.monotonic() - started


def receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    """A local endpoint answering 204 to everything; the count of what it got."""
    got = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got[0] += 1
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--subscriptions", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hub-bench-subs-"))
    url = fresh_database_url(args.database, workdir)
    database = Database(Settings(database_url=url, key_dir=str(workdir / "keys")))
    upgrade(database.engine)
    n = args.observations
    write(database, 10 * n, n)  # a warm-up, then statistics as autovacuum (PostgreSQL) or the hub (SQLite) keep them
    database.analyze_store()
    unwatched = write(database, 0, n)
    database.analyze_store()
    server, got = receiver()
    client, _secret = new_client("bench subscriber", Role.APP)
    with database.clients(write=True) as store:
        store.add(client.record())
    codes = [lab[0] for lab in LABS]
    with database.fhir_service(write=True, access=Access.unrestricted(client.client_id)) as service:
        for i in range(args.subscriptions):
            criteria = "Observation" if i == 0 else f"Observation?code=http://loinc.org|{codes[i % len(codes)]}"
            service.create("Subscription", {
                "resourceType": "Subscription", "status": "active", "reason": "benchmark", "criteria": criteria,
                "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{server.server_port}/hook"}})
    watched = write(database, n, n)
    database.analyze_store()
    matcher, deliverer = SubscriptionMatcher(database), Deliverer(database)
    started = time.monotonic()
    matched = deliveries = 0
    while (stats := matcher.run_once(500)).events:
        matched += stats.events
        deliveries += stats.deliveries
    matching = time.monotonic() - started
    started = time.monotonic()
    sent = 0
    while (result := deliverer.run_once(500)).sent:
        sent += result.sent
    sending = time.monotonic() - started
    deliverer.close()
    server.shutdown()
    database.dispose()
    assert got[0] == sent == deliveries, (got[0], sent, deliveries)
    print(f"\n{args.database}: {n:,} Observations per run, {args.subscriptions} Subscriptions on Observation")
    print("| measure | figure |")
    print("|---|---:|")
    print(f"| writes, nothing watched | {n / unwatched:,.0f} Observations/s |")
    print(f"| writes, Observation watched (events queued in the transaction) | {n / watched:,.0f} Observations/s |")
    print(f"| matching the queued writes against {args.subscriptions} Subscriptions | {matched / matching:,.0f} "
          f"writes/s ({deliveries:,} notifications) |")
    print(f"| sending id-only notifications to a local endpoint | {sent / sending:,.0f}/s |")


if __name__ == "__main__":
    main()
