"""Helpers of the security tests: registered clients, tokens, principals."""

from __future__ import annotations

from typing import Any

import httpx

from hub.auth.clients import Client, new_client
from hub.auth.principal import Principal
from hub.auth.roles import Role, scope_ceiling
from hub.fhir.access import INSTITUTION_TAG
from hub.store.database import Database


def register(database: Database, role: Role, **options: Any) -> tuple[Client, str | None]:
    """Register a client as ``hub clients create`` does; returns it and its secret."""
    client, secret = new_client(f"test {role.value}", role, **options)
    with database.clients(write=True) as store:
        store.add(client.record())
    return client, secret


def principal(role: Role, *, institutions: tuple[str, ...] = (), consortia: tuple[str, ...] = (),
              client_id: str | None = None) -> Principal:
    """A principal with everything its role may be granted."""
    return Principal(client_id or f"client-{role.value}", role, scope_ceiling(role), frozenset(institutions),
                     frozenset(consortia))


def token(server: str, client_id: str, secret: str, **form: str) -> httpx.Response:
    """POST /auth/token with HTTP Basic client credentials."""
    return httpx.post(f"{server}/auth/token", auth=(client_id, secret),
                      data={"grant_type": "client_credentials", **form}, timeout=30)


def tagged(resource: dict[str, Any], institution: str) -> dict[str, Any]:
    """``resource`` owned by ``institution``."""
    return {**resource, "meta": {"tag": [{"system": INSTITUTION_TAG, "code": institution}]}}
