"""OAuth2 token endpoint (SMART Backend Services), SMART configuration, JWKS, client administration."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from hub.api.http import PrintableModel, media_type_of, read_body, token_endpoint
from hub.api.security import Security, client_address, requires
from hub.auth.clients import (
    ASSERTION_TYPE,
    Client,
    ClientAuthenticator,
    ClientError,
    OAuthError,
    claimed_client,
    new_client,
    requested_grants,
)
from hub.auth.principal import Principal
from hub.auth.roles import Permission, Role
from hub.auth.scopes import format_grants
from hub.config import Settings
from hub.errors import InvalidRequest, NotFound
from hub.store.database import Database

router = APIRouter(tags=["security"])
SCOPES_SUPPORTED = ["system/*.read", "system/*.write", "system/*.rs", "system/*.cruds"]


def _oauth_error(error: OAuthError, scripted: bool = False) -> JSONResponse:
    """The RFC 6749 error; a 401 carries the Basic challenge, except to a page's script (``X-Requested-With``),
    for which a browser would otherwise open its own password prompt."""
    headers = {"WWW-Authenticate": 'Basic realm="hub"'} if error.status == 401 and not scripted else None
    return JSONResponse({"error": error.error, "error_description": error.description}, status_code=error.status,
                        headers=headers)


@router.post("/auth/token", summary="OAuth2 token endpoint (client credentials)")
async def token(request: Request) -> Response:
    """Exchange client credentials for a short-lived access token.

    ``grant_type=client_credentials`` with ``client_secret_basic`` (HTTP Basic) or
    ``private_key_jwt`` (``client_assertion_type`` + ``client_assertion``); optional ``scope``.
    Errors follow RFC 6749 §5.2 (``{"error": …, "error_description": …}``).
    """
    settings: Settings = request.app.state.settings
    security: Security = request.app.state.security
    database: Database = request.app.state.database
    security.token_limit.check(client_address(request))
    try:
        if media_type_of(request.headers.get("content-type")) != "application/x-www-form-urlencoded":
            raise OAuthError("invalid_request", "Send the token request as application/x-www-form-urlencoded")
        raw = await read_body(request, settings)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "Only grant_type=client_credentials is supported")
        authorization = request.headers.get("authorization", "")
        request.state.claimed_client = claimed_client(authorization, form.get("client_assertion"))

        def authenticate() -> Client:
            with database.clients(write=True) as store:
                authenticator = ClientAuthenticator(store)
                if form.get("client_assertion_type") == ASSERTION_TYPE and form.get("client_assertion"):
                    # Only the hub's own token URL (set HUB_PUBLIC_BASE_URL in production: then the
                    # Host header cannot choose it).
                    return authenticator.assertion(form["client_assertion"], [token_endpoint(request, settings)])
                if authorization.lower().startswith("basic "):
                    return authenticator.basic(authorization)
            raise OAuthError("invalid_client", "Authenticate with HTTP Basic or a private_key_jwt assertion", 401)

        client = await run_in_threadpool(authenticate)
        request.state.principal = client.principal(client.grants)
        grants = requested_grants(client, form.get("scope"))
    except OAuthError as error:
        return _oauth_error(error, request.headers.get("x-requested-with") == "XMLHttpRequest")
    access_token, lifetime = security.tokens.issue(client.principal(grants))
    return JSONResponse(
        {"access_token": access_token, "token_type": "bearer", "expires_in": lifetime,
         "scope": " ".join(format_grants(grants))},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _smart_configuration(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    url = token_endpoint(request, settings)
    return {
        "token_endpoint": url,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "ES256", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1",
                         "permission-v2"],
        "jwks_uri": url.replace("/auth/token", "/.well-known/jwks.json"),
    }


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
@router.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
def smart_configuration(request: Request) -> JSONResponse:
    """Where and how to get access tokens (no token needed)."""
    return JSONResponse(_smart_configuration(request))


@router.get("/.well-known/jwks.json", summary="Token-signing public keys")
def jwks(request: Request) -> JSONResponse:
    """The public key that verifies the hub's access tokens."""
    security: Security = request.app.state.security
    return JSONResponse(security.tokens.key.jwks())


# -- client administration (admin role) ------------------------------------------


class ClientRequest(PrintableModel):
    """A client to register."""

    name: str = Field(min_length=1, max_length=200)
    role: Role
    institutions: list[str] = Field(default_factory=list, max_length=200)
    consortia: list[str] = Field(default_factory=list, max_length=50)
    scopes: list[str] | None = Field(default=None, max_length=200)
    jwks: dict[str, Any] | None = None


def client_summary(client: Client) -> dict[str, Any]:
    """What the hub shows of a client (never its secret or hash)."""
    return {
        "client_id": client.client_id, "name": client.name, "role": client.role.value,
        "scopes": format_grants(client.grants), "institutions": sorted(client.institutions),
        "consortia": sorted(client.consortia), "auth_method": client.auth_method, "active": client.active,
        "created": client.created.isoformat(),
    }


Admin = Annotated[Principal, Depends(requires(Permission.MANAGE_CLIENTS))]


@router.get("/admin/clients", summary="List API clients")
def list_clients(request: Request, _admin: Admin) -> JSONResponse:
    """Every registered client (admin)."""
    with request.app.state.database.clients(write=False) as store:
        return JSONResponse([client_summary(Client.from_record(r)) for r in store.all()])


@router.post("/admin/clients", summary="Register an API client", status_code=201)
def create_client(request: Request, body: ClientRequest, _admin: Admin) -> JSONResponse:
    """Register a client; its secret is in this response only (admin)."""
    try:
        client, secret = new_client(body.name, body.role, institutions=body.institutions, consortia=body.consortia,
                                    scopes=body.scopes, jwks=body.jwks)
    except ClientError as exc:
        raise InvalidRequest(str(exc)) from None
    with request.app.state.database.clients(write=True) as store:
        store.add(client.record())
    return JSONResponse({**client_summary(client), "client_secret": secret}, status_code=201,
                        headers={"Cache-Control": "no-store"})


@router.delete("/admin/clients/{client_id}", summary="Disable an API client")
def disable_client(request: Request, client_id: str, _admin: Admin) -> JSONResponse:
    """Disable a client: it gets no new tokens (its current ones expire within their short lifetime)."""
    with request.app.state.database.clients(write=True) as store:
        if not store.set_active(client_id, False):
            raise NotFound(f"No client {client_id[:64]}")
    return JSONResponse({"client_id": client_id, "active": False})
