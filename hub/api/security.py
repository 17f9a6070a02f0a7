"""Authentication and authorization as typed FastAPI dependencies.

Every route but ``/fhir/metadata``, the SMART configuration, the JWKS, ``/health`` and the
token endpoint needs a valid bearer token; its principal is kept on the request for the
audit trail, rate-limited, and turned into the FHIR :class:`~hub.fhir.access.Access` the
service and the store enforce.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.auth.principal import Principal
from hub.auth.ratelimit import RateLimiter
from hub.auth.roles import Permission
from hub.auth.tokens import TokenService, load_signing_key
from hub.config import Settings
from hub.errors import Unauthorized
from hub.fhir.access import Access
from hub.store.database import Database


@dataclass
class Security:
    """The app's token service and rate limiters (``app.state.security``)."""

    tokens: TokenService
    clients_limit: RateLimiter
    #: Token requests per source address (guessing secrets is slow).
    token_limit: RateLimiter

    @classmethod
    def create(cls, settings: Settings) -> "Security":
        """Load (or, in development, generate) the signing key; refuses production without one."""
        return cls(
            TokenService(load_signing_key(settings), settings),
            RateLimiter(settings.rate_limit_per_minute),
            RateLimiter(max(60, settings.rate_limit_per_minute // 10)),
        )


#: Declares the bearer scheme in the OpenAPI spec; the checks and the error answers are ours.
_BEARER = HTTPBearer(auto_error=False, bearerFormat="JWT", scheme_name="smart-backend-services",
                     description="An access token from POST /auth/token (OAuth2 client credentials)")


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> Principal:
    """FastAPI dependency: the verified, rate-limited principal of the request (401 without a valid token)."""
    security: Security = request.app.state.security
    if credentials is None or not credentials.credentials.strip():
        security.token_limit.check(client_address(request))  # unauthenticated callers are limited per address
        raise Unauthorized("This endpoint needs an access token (Authorization: Bearer …); "
                           "get one from /auth/token", error="invalid_request")
    try:
        principal = security.tokens.verify(credentials.credentials.strip())
    except Unauthorized:
        security.token_limit.check(client_address(request))
        raise
    request.state.principal = principal
    security.clients_limit.check(principal.client_id)
    return principal


Authenticated = Annotated[Principal, Depends(current_principal)]


def client_address(request: Request) -> str:
    """The network address of the caller (for limits of unauthenticated requests)."""
    return request.client.host if request.client else "unknown"


def fhir_access(principal: Principal, database: Database) -> Access:
    """The FHIR access of ``principal`` (its consortia resolved to institutions)."""
    return principal.resolved_access(database.reach)


def requires(permission: Permission) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency: the principal, if its role includes ``permission`` (else 403)."""

    async def dependency(principal: Authenticated) -> Principal:
        principal.require(permission)
        return principal

    return dependency
