"""The FHIR access of a Subscription's owning client, from its registration (as it is now, not when it subscribed)."""

from __future__ import annotations

from hub.auth.clients import Client
from hub.fhir.access import Access
from hub.store.database import Database

#: The principal of the hub's own jobs and command line.
HUB_PRINCIPAL = Access.unrestricted().principal


def client_access(database: Database, client_id: str | None) -> Access | None:
    """What the registered client may read now (all its granted scopes), or None when it is unknown or disabled.

    The same reach as the client's tokens get: its institutions and everything under its consortia.
    """
    if not client_id:
        return None
    if client_id == HUB_PRINCIPAL:  # written by the hub's own command line
        return Access.unrestricted()
    with database.clients(write=False) as store:
        record = store.get(client_id)
    if record is None or not record["active"]:
        return None
    client = Client.from_record(record)
    return client.principal(dict(client.grants)).resolved_access(database.reach)
