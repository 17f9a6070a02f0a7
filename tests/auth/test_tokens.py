"""The token endpoint (SMART Backend Services) and access-token checks."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hub.auth.roles import Role
from hub.config import Settings
from hub.store.database import Database
from tests.auth.support import register, token
from tests.conftest import FHIR_JSON, assert_outcome


def _rsa_client(database: Database) -> tuple[str, rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "k-" + uuid.uuid4().hex[:8]
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS384"}
    client, secret = register(database, Role.APP, jwks={"keys": [jwk]})
    assert secret is None  # a private_key_jwt client has no secret
    return client.client_id, key, kid


def _assertion(client_id: str, key: object, kid: str, aud: str, *, lifetime: int = 240, jti: str | None = None,
               algorithm: str = "RS384") -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime, "iat": now,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _jwt_token(server: str, assertion: str) -> httpx.Response:
    return httpx.post(f"{server}/auth/token", data={
        "grant_type": "client_credentials", "scope": "system/Patient.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    })


def test_client_secret_basic_gets_a_short_lived_token_that_works(server: str, database: Database) -> None:
    client, secret = register(database, Role.APP)
    response = token(server, client.client_id, secret or "")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and 30 <= body["expires_in"] <= 3600
    assert body["scope"] == "system/*.rs system/Subscription.cruds"
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == client.client_id and claims["exp"] - claims["iat"] == body["expires_in"]
    read = httpx.get(f"{server}/fhir/Patient", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert read.status_code == 200


def test_requested_scopes_narrow_the_grant(server: str, database: Database) -> None:
    client, secret = register(database, Role.APP)
    body = token(server, client.client_id, secret or "", scope="system/Observation.read system/Patient.rs").json()
    assert set(body["scope"].split()) == {"system/Observation.rs", "system/Patient.rs"}
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{server}/fhir/Observation", headers=headers).status_code == 200
    assert_outcome(httpx.get(f"{server}/fhir/Condition", headers=headers), 403, contains="Condition")


@pytest.mark.parametrize(("form", "status", "error"), [
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "system/Patient.write"}, 400, "invalid_scope"),
    ({"grant_type": "client_credentials", "scope": "user/Patient.read"}, 400, "invalid_scope"),
])
def test_token_request_errors_follow_rfc_6749(server: str, database: Database, form: dict, status: int,
                                               error: str) -> None:
    client, secret = register(database, Role.APP)
    response = httpx.post(f"{server}/auth/token", auth=(client.client_id, secret or ""), data=form)
    assert response.status_code == status and response.json()["error"] == error, response.text
    assert response.json()["error_description"]


def test_wrong_secret_unknown_and_disabled_clients_are_401(server: str, database: Database) -> None:
    client, secret = register(database, Role.APP)
    wrong = token(server, client.client_id, "not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert token(server, "nobody", secret or "").status_code == 401
    with database.clients(write=True) as store:
        assert store.set_active(client.client_id, False)
    assert token(server, client.client_id, secret or "").status_code == 401
    no_auth = httpx.post(f"{server}/auth/token", data={"grant_type": "client_credentials"})
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "invalid_client"
    json_body = httpx.post(f"{server}/auth/token", json={"grant_type": "client_credentials"})
    assert json_body.status_code == 400 and json_body.json()["error"] == "invalid_request"


def test_secret_is_stored_only_as_a_hash(database: Database) -> None:
    client, secret = register(database, Role.APP)
    with database.clients(write=False) as store:
        record = store.get(client.client_id)
    assert record is not None and secret
    assert secret not in str(record) and record["secret_hash"].startswith("scrypt$")


def test_private_key_jwt(server: str, database: Database) -> None:
    client_id, key, kid = _rsa_client(database)
    aud = f"{server}/auth/token"
    response = _jwt_token(server, _assertion(client_id, key, kid, aud))
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Patient.rs"


@pytest.mark.parametrize("problem", ["replayed", "wrong audience", "expired", "too long-lived", "other key",
                                     "sub differs", "unknown kid"])
def test_private_key_jwt_refusals(server: str, database: Database, problem: str) -> None:
    client_id, key, kid = _rsa_client(database)
    aud = f"{server}/auth/token"
    if problem == "replayed":
        assertion = _assertion(client_id, key, kid, aud, jti="once")
        assert _jwt_token(server, assertion).status_code == 200
    elif problem == "wrong audience":
        assertion = _assertion(client_id, key, kid, "https://elsewhere.example/token")
    elif problem == "expired":
        assertion = _assertion(client_id, key, kid, aud, lifetime=-60)
    elif problem == "too long-lived":
        assertion = _assertion(client_id, key, kid, aud, lifetime=3600)
    elif problem == "other key":
        assertion = _assertion(client_id, rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, aud)
    elif problem == "sub differs":
        now = int(time.time())
        assertion = jwt.encode({"iss": client_id, "sub": "someone-else", "aud": aud, "exp": now + 60, "jti": "x"},
                               key, algorithm="RS384", headers={"kid": kid})
    else:
        assertion = _assertion(client_id, key, "no-such-kid", aud)
    response = _jwt_token(server, assertion)
    assert response.status_code == 401 and response.json()["error"] == "invalid_client", response.text


def _token_parts(server: str, database: Database) -> tuple[str, dict, dict, bytes]:
    client, secret = register(database, Role.APP)
    access = token(server, client.client_id, secret or "").json()["access_token"]
    header = jwt.get_unverified_header(access)
    claims = jwt.decode(access, options={"verify_signature": False})
    return access, header, claims, base64.urlsafe_b64decode(access.split(".")[2] + "==")


def _call(server: str, access: str) -> httpx.Response:
    return httpx.get(f"{server}/fhir/Patient", headers={"Authorization": f"Bearer {access}"})


def test_tampered_token_is_401(server: str, database: Database) -> None:
    access, _header, claims, _sig = _token_parts(server, database)
    head, _payload, signature = access.split(".")
    forged = {**claims, "hub_role": "admin", "scope": "system/*.cruds"}
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    response = _call(server, f"{head}.{payload}.{signature}")
    assert_outcome(response, 401, contains="invalid")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_signed_by_another_key_or_none_alg_is_401(server: str, database: Database) -> None:
    _access, header, claims, _sig = _token_parts(server, database)
    other = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers=header)
    assert_outcome(_call(server, other), 401)
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_outcome(_call(server, unsigned), 401)


def test_expired_wrong_audience_and_wrong_issuer_tokens_are_401(server: str, settings: Settings) -> None:
    from tests.conftest import _TOKENS

    key = _TOKENS[0].key
    now = int(time.time())
    base = {"iss": settings.token_issuer, "aud": settings.token_audience, "sub": "c", "iat": now - 10,
            "exp": now + 60, "scope": "system/*.rs", "hub_role": "app"}
    cases = {
        "expired": {**base, "iat": now - 700, "exp": now - 600},
        "another audience": {**base, "aud": "urn:other:api"},
        "not issued by this hub": {**base, "iss": "https://idp.example"},
    }
    for expected, claims in cases.items():
        forged = jwt.encode(claims, key.private_key, algorithm="ES256", headers={"kid": key.kid})
        assert_outcome(_call(server, forged), 401, contains=expected)
    good = jwt.encode(base, key.private_key, algorithm="ES256", headers={"kid": key.kid})
    assert _call(server, good).status_code == 200


def test_missing_or_malformed_authorization_is_401(server: str) -> None:
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer x.y"}):
        response = httpx.get(f"{server}/fhir/Patient", headers=headers)
        assert_outcome(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_discovery_is_public(server: str) -> None:
    smart = httpx.get(f"{server}/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == f"{server}/auth/token"
    assert set(smart["token_endpoint_auth_methods_supported"]) == {"client_secret_basic", "private_key_jwt"}
    assert smart["grant_types_supported"] == ["client_credentials"]
    assert httpx.get(f"{server}/fhir/.well-known/smart-configuration").json() == smart
    metadata = httpx.get(f"{server}/fhir/metadata")
    assert metadata.status_code == 200 and metadata.headers["content-type"].startswith(FHIR_JSON)
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"][0]["extension"][0]["valueUri"] == f"{server}/auth/token"
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_jwks_verifies_issued_tokens(server: str, database: Database) -> None:
    access, header, _claims, _sig = _token_parts(server, database)
    keys = jwt.PyJWKSet.from_dict(httpx.get(f"{server}/.well-known/jwks.json").json())
    key = next(k for k in keys.keys if k.key_id == header["kid"])
    claims = jwt.decode(access, key.key, algorithms=["ES256"], audience="urn:hub:fhir")
    assert claims["hub_role"] == "app"
