"""A real HTTP receiver for rest-hook notifications, and registered owners of Subscriptions."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from hub.auth.principal import Principal
from hub.auth.roles import Role, scope_ceiling
from hub.store.database import Database
from tests.auth.support import register


@dataclass
class Received:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the endpoint got, and what it answers (``status``)."""

    port: int
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """The endpoint to put in ``Subscription.channel.endpoint``."""
        return f"http://127.0.0.1:{self.port}/hook"


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def receiver(port: int | None = None) -> Iterator[Receiver]:
    """A real HTTP server on loopback recording every request."""
    state = Receiver(port or free_port())

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.requests.append(Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                           body))
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            state.arrived.set()

        do_POST = do_PUT = _record  # noqa: N815

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def owner(database: Database, role: Role = Role.APP, **options: object) -> Principal:
    """A registered client (as ``hub clients create`` makes) and its principal with every scope of its role."""
    client, _secret = register(database, role, **options)
    return Principal(client.client_id, role, scope_ceiling(role), client.institutions, client.consortia)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time on."""
        self.now += timedelta(seconds=seconds)


def subscription(endpoint: str, criteria: str, *, payload: str | None = None, headers: tuple[str, ...] = (),
                 status: str = "requested", **extra: object) -> dict:
    """An R4 rest-hook Subscription."""
    channel: dict = {"type": "rest-hook", "endpoint": endpoint}
    if payload:
        channel["payload"] = payload
    if headers:
        channel["header"] = list(headers)
    return {"resourceType": "Subscription", "status": status, "reason": "测试通知", "criteria": criteria,
            "channel": channel, **extra}
