"""Registered clients and how they authenticate at the token endpoint (SMART Backend Services).

Two client authentication methods: ``client_secret_basic`` (a generated secret, stored
hashed) and ``private_key_jwt`` (a client assertion signed with a key from the client's
registered JWKS; each assertion ``jti`` is accepted once).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import unquote

import jwt

from hub.auth.passwords import hash_secret, new_secret, verify_secret
from hub.auth.principal import Principal
from hub.auth.roles import Role, needs_institution, scope_ceiling
from hub.auth.scopes import Grants, ScopeError, format_grants, grants_of, intersect
from hub.privacy import mask_text

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
#: Longest accepted lifetime of a client assertion (SMART: no more than five minutes).
MAX_ASSERTION_SECONDS = 300


class OAuthError(Exception):
    """An OAuth 2.0 error response (RFC 6749 §5.2): ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class ClientError(ValueError):
    """A client registration that cannot be made (role, institutions, scopes, keys)."""


@dataclass(frozen=True)
class Client:
    """A registered API client."""

    client_id: str
    name: str
    role: Role
    grants: Grants
    institutions: frozenset[str] = frozenset()
    consortia: frozenset[str] = frozenset()
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    active: bool = True
    created: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def auth_method(self) -> str:
        """``private_key_jwt`` or ``client_secret_basic``."""
        return "private_key_jwt" if self.jwks else "client_secret_basic"

    def principal(self, grants: Grants) -> Principal:
        """The principal a token for this client (with ``grants``) stands for."""
        return Principal(self.client_id, self.role, grants, self.institutions, self.consortia)

    def record(self) -> dict[str, Any]:
        """The plain record a :class:`ClientStore` keeps."""
        return {
            "client_id": self.client_id, "name": self.name, "role": self.role.value,
            "scopes": format_grants(self.grants), "institutions": sorted(self.institutions),
            "consortia": sorted(self.consortia), "secret_hash": self.secret_hash, "jwks": self.jwks,
            "active": self.active, "created": self.created,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Client":
        """The client a stored record describes."""
        return cls(
            client_id=record["client_id"], name=record["name"], role=Role(record["role"]),
            grants=grants_of(record["scopes"]), institutions=frozenset(record["institutions"]),
            consortia=frozenset(record["consortia"]), secret_hash=record["secret_hash"], jwks=record["jwks"],
            active=bool(record["active"]), created=record["created"],
        )


class ClientStore(Protocol):
    """Where client records and used assertion ids are kept (implemented in ``hub.store.clients``)."""

    def add(self, record: dict[str, Any]) -> None:
        """Register a new client (:meth:`Client.record`)."""

    def get(self, client_id: str) -> dict[str, Any] | None:
        """The client's record, or None."""

    def all(self) -> list[dict[str, Any]]:
        """Every client record, oldest first."""

    def set_active(self, client_id: str, active: bool) -> bool:
        """Enable or disable a client; False if it does not exist."""

    def use_assertion(self, client_id: str, jti: str, expires: int) -> bool:
        """Record an assertion id; False if it was already used (a replay)."""


def _new_client_id() -> str:
    """A random client id that masking leaves alone (a hex run of digits can look like a phone number,
    and a masked id in the audit trail or a log would name no one)."""
    while True:
        candidate = uuid.uuid4().hex
        if mask_text(candidate) == candidate:
            return candidate


def new_client(
    name: str,
    role: Role,
    *,
    institutions: Iterable[str] = (),
    consortia: Iterable[str] = (),
    scopes: Sequence[str] | None = None,
    jwks: dict[str, Any] | None = None,
) -> tuple[Client, str | None]:
    """A new client and its secret (None for a ``private_key_jwt`` client), checked against its role."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ClientError("A client needs a name of 1 to 200 characters")
    institutions, consortia = frozenset(institutions), frozenset(consortia)
    if needs_institution(role) and not institutions:
        raise ClientError(f"A {role} client must be bound to at least one institution (--institution)")
    if role is Role.SOURCE_ADMIN and consortia:
        raise ClientError("A source-admin (hospital IT) client is bound to institutions, not consortia")
    if role is Role.ADMIN and (institutions or consortia):
        raise ClientError("An admin client cannot be limited to institutions or consortia")
    ceiling = scope_ceiling(role)
    try:
        grants = ceiling if scopes is None else grants_of(scopes)
    except ScopeError as exc:
        raise ClientError(str(exc)) from None
    granted = intersect(grants, ceiling)
    if format_grants(granted) != format_grants(grants):
        raise ClientError(f"The role {role} may be granted at most: {' '.join(format_grants(ceiling))}")
    if jwks is not None:
        _check_jwks(jwks)
    secret = None if jwks is not None else new_secret()
    client = Client(
        client_id=_new_client_id(), name=name, role=role, grants=granted, institutions=institutions,
        consortia=consortia, secret_hash=hash_secret(secret) if secret else None, jwks=jwks,
    )
    return client, secret


def _check_jwks(jwks: dict[str, Any]) -> None:
    try:
        keys = jwt.PyJWKSet.from_dict(jwks).keys
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, KeyError, TypeError, ValueError) as exc:
        raise ClientError(f"The JWKS is not usable: {str(exc)[:200]}") from None
    if any(getattr(k.key, "private_bytes", None) for k in keys):
        raise ClientError("The JWKS must hold public keys only")


def requested_grants(client: Client, scope: str | None) -> Grants:
    """The grants of a token request: the requested scopes within the client's, or all of its own."""
    if not scope or not scope.strip():
        return dict(client.grants)
    try:
        requested = grants_of(scope.split())
    except ScopeError as exc:
        raise OAuthError("invalid_scope", str(exc)) from None
    granted = intersect(requested, client.grants)
    if not granted:
        raise OAuthError("invalid_scope", "None of the requested scopes is granted to this client")
    return granted


def claimed_client(authorization: str, assertion: str | None) -> str | None:
    """The client id a token request claims (before it is authenticated), for the audit trail."""
    try:
        if assertion:
            claimed = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
            return claimed if isinstance(claimed, str) else None
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization.split(" ", 1)[1], validate=True).decode("utf-8")
            return unquote(decoded.split(":", 1)[0])
    except (jwt.InvalidTokenError, ValueError, binascii.Error, UnicodeDecodeError, IndexError):
        return None
    return None


class ClientAuthenticator:
    """Authenticates clients at the token endpoint."""

    def __init__(self, store: ClientStore) -> None:
        self.store = store

    def _client(self, client_id: str) -> Client | None:
        record = self.store.get(client_id)
        return Client.from_record(record) if record is not None else None

    def basic(self, authorization: str) -> Client:
        """``Authorization: Basic base64(client_id:secret)`` (each part form-urlencoded, RFC 6749 §2.3.1)."""
        try:
            decoded = base64.b64decode(authorization.split(" ", 1)[1], validate=True).decode("utf-8")
            client_id, secret = (unquote(p.replace("+", " ")) for p in decoded.split(":", 1))
        except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "Malformed Basic credentials", 401) from None
        client = self._client(client_id)
        if client is None or not client.active or not client.secret_hash or not verify_secret(secret, client.secret_hash):
            raise OAuthError("invalid_client", "Unknown client, disabled client or wrong secret", 401)
        return client

    def assertion(self, assertion: str, token_urls: Sequence[str]) -> Client:
        """A ``private_key_jwt`` client assertion: signature, audience, lifetime and single use."""
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_client", "The client assertion is not a JWT", 401) from None
        client_id = claims.get("iss")
        client = self._client(client_id) if isinstance(client_id, str) else None
        if client is None or not client.active or not client.jwks:
            raise OAuthError("invalid_client", "Unknown or disabled client, or no registered keys", 401)
        key = _key_for(client.jwks, header.get("kid"))
        try:
            verified = jwt.decode(
                assertion, key, algorithms=ASSERTION_ALGORITHMS, audience=list(token_urls),
                options={"require": ["iss", "sub", "aud", "exp", "jti"]}, leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_client", "The client assertion has expired", 401) from None
        except jwt.InvalidAudienceError:
            raise OAuthError("invalid_client", "The client assertion's aud is not this token endpoint", 401) from None
        except jwt.InvalidTokenError as exc:
            raise OAuthError("invalid_client", f"The client assertion is invalid: {str(exc)[:120]}", 401) from None
        except (TypeError, ValueError, jwt.PyJWKError):  # e.g. an RS256 header for an EC key
            raise OAuthError("invalid_client", "The client assertion's algorithm does not fit the registered key",
                             401) from None
        if verified["sub"] != client.client_id:
            raise OAuthError("invalid_client", "The client assertion's sub must equal its iss", 401)
        expires = int(verified["exp"])
        if expires - time.time() > MAX_ASSERTION_SECONDS + 5:
            raise OAuthError("invalid_client", "The client assertion may live at most five minutes", 401)
        if not self.store.use_assertion(client.client_id, str(verified["jti"])[:255], expires):
            raise OAuthError("invalid_client", "The client assertion was already used (jti replay)", 401)
        return client


def _key_for(jwks: dict[str, Any], kid: Any) -> Any:
    keys = jwt.PyJWKSet.from_dict(jwks).keys
    chosen = [k for k in keys if k.key_id == kid] if kid else keys
    if len(chosen) != 1:
        raise OAuthError("invalid_client", "No single registered key matches the assertion's kid", 401)
    return chosen[0].key
