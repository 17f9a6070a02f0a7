"""R4 Subscriptions (rest-hook), in FHIR terms: what a Subscription may say and what it asks for.

A Subscription watches one resource type through a search-URL ``criteria``
(``Task?status=completed&requester=Organization/b``); the hub sends a notification to
``channel.endpoint`` for every created or updated resource whose new version matches.
Only the ``rest-hook`` channel is offered. With no ``channel.payload`` the notification is
an empty POST to the endpoint (R4; the hub names the resource in ``X-Hub-Resource``, an
id-only notification); with a payload (``application/fhir+json``) the resource itself is
PUT to ``[endpoint]/[type]/[id]``, as R4 and HAPI FHIR do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from hub.errors import InvalidRequest, NotSupported
from hub.fhir.access import OWNER_TAG
from hub.fhir.resource_types import resource_types
from hub.privacy import clip

#: ``meta.tag`` system naming the client that owns a Subscription (set by the hub on every write):
#: notifications carry only what that client may read, and only it (and administrators) sees it.
SUBSCRIBER_TAG = OWNER_TAG
#: The statuses a client may write; ``error`` is the hub's own (retries exhausted).
CLIENT_STATUSES = ("requested", "active", "off")
#: Subscriptions in these statuses are watched (requested ones are activated by the hub).
WATCHED_STATUSES = ("requested", "active")
#: Payload types the hub sends (JSON only).
PAYLOADS = ("application/fhir+json", "application/json")
#: An HTTP header name (RFC 9110 token) and value (visible ASCII and spaces).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}")
_VISIBLE = re.compile(r"[\x20-\x7e]{0,4000}")
_SPACE = re.compile(r"\s")
#: Headers a Subscription may not set: the hub's own and those that frame the request.
_RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection",
                               "x-hub-subscription", "x-hub-resource", "x-hub-delivery"})


@dataclass(frozen=True, slots=True)
class Channel:
    """Where and how notifications go."""

    endpoint: str
    #: None: an id-only notification (POST, no body); else the MIME type of the resource sent.
    payload: str | None
    #: ``(name, value)`` HTTP headers to send with every notification.
    headers: tuple[tuple[str, str], ...]


def criteria_of(subscription: dict[str, Any]) -> tuple[str, str]:
    """``(resource type, query)`` of the Subscription's criteria (``Type?query``)."""
    criteria = subscription.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise InvalidRequest("Subscription.criteria is required: a search URL such as 'Task?status=completed'",
                             expression="Subscription.criteria")
    resource_type, _, query = criteria.strip().partition("?")
    resource_type = resource_type.strip().rstrip("/")
    if resource_type not in resource_types():
        raise InvalidRequest(f"Subscription.criteria must start with a resource type, got '{clip(resource_type, 64)}'",
                             expression="Subscription.criteria")
    return resource_type, query


def channel_of(subscription: dict[str, Any]) -> Channel:
    """The checked channel of a Subscription (only rest-hook; http(s) endpoints; JSON payloads)."""
    channel = subscription.get("channel")
    if not isinstance(channel, dict):
        raise InvalidRequest("Subscription.channel is required", expression="Subscription.channel")
    if channel.get("type") != "rest-hook":
        raise NotSupported(f"Subscription channel type '{clip(str(channel.get('type')), 32)}' is not supported; "
                           "the hub delivers rest-hook notifications only", expression="Subscription.channel.type")
    endpoint = _endpoint(channel.get("endpoint"))
    payload = channel.get("payload")
    if payload is not None and payload not in PAYLOADS:
        raise NotSupported(f"Subscription.channel.payload '{clip(str(payload), 64)}' is not supported "
                           "(use application/fhir+json, or none for id-only notifications)",
                           expression="Subscription.channel.payload")
    headers = []
    for index, header in enumerate(channel.get("header") or ()):
        name, colon, value = header.partition(":") if isinstance(header, str) else ("", "", "")
        name, value = name.strip(), value.strip()
        if not colon or not _TOKEN.fullmatch(name) or not _VISIBLE.fullmatch(value):
            raise InvalidRequest("Subscription.channel.header entries must read 'Name: value' (an HTTP header: "
                                 "ASCII letters, digits and -_. in the name, printable ASCII in the value)",
                                 expression=f"Subscription.channel.header[{index}]")
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidRequest(f"Subscription.channel.header may not set {name} (the hub sets it)",
                                 expression=f"Subscription.channel.header[{index}]")
        headers.append((name, value))
    return Channel(endpoint, payload, tuple(headers))


def _endpoint(endpoint: Any) -> str:
    """The endpoint, if it is an absolute http(s) URL the HTTP client can call."""
    try:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        valid = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname) \
            and (parts.port is None or parts.port > 0) and endpoint.isascii() and not _SPACE.search(endpoint)
    except ValueError:  # a malformed host or port
        valid = False
    if not valid:
        raise InvalidRequest("Subscription.channel.endpoint must be an absolute http(s) URL",
                             expression="Subscription.channel.endpoint")
    return endpoint.rstrip("/")


def endpoint_allowed(endpoint: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the hub may notify ``endpoint``: it is one of ``prefixes`` or under one, path segment by path
    segment (``http://a.cn`` allows ``http://a.cn/x``, not ``http://a.cn.example.com``); none: any endpoint."""
    target = endpoint.rstrip("/") + "/"
    return not prefixes or any(target.startswith(p.rstrip("/") + "/") for p in prefixes)


def check_subscription(subscription: dict[str, Any]) -> tuple[str, str]:
    """Refuse a Subscription a client may not write or the hub cannot serve; its criteria ``(type, query)``
    when it can.

    Clients write ``requested``, ``active`` or ``off``; ``error`` is set by the hub alone.
    """
    status = subscription.get("status")
    if status not in CLIENT_STATUSES:
        raise InvalidRequest(f"Subscription.status must be one of {', '.join(CLIENT_STATUSES)} "
                             "(the hub sets 'error' itself)", expression="Subscription.status")
    channel_of(subscription)
    return criteria_of(subscription)


def with_subscriber(subscription: dict[str, Any], client_id: str) -> dict[str, Any]:
    """The Subscription tagged with its owner (any owner tag it carried is replaced)."""
    meta = subscription.get("meta") or {}
    tags = [t for t in meta.get("tag") or () if not (isinstance(t, dict) and t.get("system") == SUBSCRIBER_TAG)]
    tags.append({"system": SUBSCRIBER_TAG, "code": client_id})
    return {**subscription, "meta": {**meta, "tag": tags}}


def watched_type(content: bytes | None) -> str | None:
    """The resource type a stored Subscription watches (None when it is off, in error or unreadable)."""
    if content is None:
        return None
    document = orjson.loads(content)
    if document.get("status") not in WATCHED_STATUSES:
        return None
    try:
        return criteria_of(document)[0]
    except InvalidRequest:
        return None
