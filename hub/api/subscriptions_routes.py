"""The delivery log of a rest-hook Subscription (the hub's JSON API).

Subscriptions themselves are FHIR resources at ``/fhir/Subscription``; this shows what
became of their notifications: every attempt's time, HTTP status and error. Only the
client that owns the Subscription (the one that last wrote it) and administrators see it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from hub.api.security import Authenticated, fhir_access
from hub.errors import NotFound
from hub.fhir import jsonio
from hub.fhir.resource_types import require_id
from hub.store.database import Database
from hub.store.subscriptions import SubscriptionStore

router = APIRouter(tags=["Subscriptions"])
#: The largest list offset.
MAX_OFFSET = 1_000_000_000


@router.get("/subscriptions/{subscription_id}/deliveries", summary="A Subscription's notifications and attempts")
def deliveries(
    subscription_id: str,
    request: Request,
    principal: Authenticated,
    status: Annotated[Literal["pending", "delivered", "failed", "dropped"] | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    count: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> JSONResponse:
    """Newest first: the resource version each notification was about, its status (``pending``,
    ``delivered``, ``failed`` after the last attempt, ``dropped`` when the Subscription went off or to
    ``error``), attempts, the endpoint's last HTTP status and error, and when it will be tried next."""
    require_id(subscription_id)
    database: Database = request.app.state.database
    with database.unit_of_work(write=False, access=fhir_access(principal, database)) as repository:
        stored = repository.read_current("Subscription", subscription_id)  # only its owner's, or an admin's
    if stored is None or stored.content is None:
        raise NotFound(f"Subscription/{subscription_id} is not known (or belongs to another client)")
    document = jsonio.loads_stored(stored.content)
    with database.connection(write=False) as connection:
        found, total = SubscriptionStore(connection).log(subscription_id, limit=count, offset=offset, status=status)
    return JSONResponse({
        "subscription": f"Subscription/{subscription_id}", "status": document.get("status"),
        "error": document.get("error"), "total": total, "offset": offset,
        "deliveries": [d.as_dict() for d in found],
    })
