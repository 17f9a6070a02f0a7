"""Access tokens: short-lived ES256 JWTs signed by the hub, verified on every request."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.auth.scopes import ScopeError, format_grants, grants_of
from hub.config import Settings
from hub.errors import Unauthorized

log = logging.getLogger("hub.auth")
ALGORITHM = "ES256"
_CACHE_SIZE = 10_000


class SigningKeyMissing(RuntimeError):
    """Production without a configured token-signing key."""


@dataclass(frozen=True)
class SigningKey:
    """The hub's token-signing key and its key id (a thumbprint, published in the JWKS)."""

    private_key: ec.EllipticCurvePrivateKey
    kid: str

    @classmethod
    def from_pem(cls, pem: bytes) -> "SigningKey":
        """Load an EC P-256 private key (PEM, unencrypted)."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("The token-signing key must be an EC P-256 private key (ES256)")
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return cls(key, _thumbprint(jwk))

    @staticmethod
    def generate_pem() -> bytes:
        """A new EC P-256 private key as PEM (``hub keys signing-key``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def jwks(self) -> dict[str, Any]:
        """The public key set (``/.well-known/jwks.json``)."""
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}]}


def _thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of an EC public JWK."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def load_signing_key(settings: Settings) -> SigningKey:
    """The configured key (``HUB_SIGNING_KEY_FILE``); in development, one generated under ``key_dir``.

    Production refuses to start without a configured key.
    """
    if settings.signing_key_file:
        return SigningKey.from_pem(Path(settings.signing_key_file).read_bytes())
    if settings.production:
        raise SigningKeyMissing(
            "HUB_ENV=production needs HUB_SIGNING_KEY_FILE (an EC P-256 PEM key; create one with "
            "'hub keys signing-key --output FILE')"
        )
    path = Path(settings.key_dir) / "signing-key.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = SigningKey.generate_pem()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:  # atomic and first-wins: workers starting together end up with the same key
            os.link(temporary, path)
            log.warning("generated a development token-signing key at %s (set HUB_SIGNING_KEY_FILE in production)",
                        path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return SigningKey.from_pem(path.read_bytes())


class TokenService:
    """Issues and verifies the hub's access tokens."""

    def __init__(self, key: SigningKey, settings: Settings) -> None:
        self.key = key
        self.issuer = settings.token_issuer
        self.audience = settings.token_audience
        self.lifetime = settings.token_lifetime_seconds
        self._public_key = key.private_key.public_key()
        #: token → (expiry, principal) of tokens already verified.
        self._verified: dict[str, tuple[float, Principal]] = {}

    def issue(self, principal: Principal) -> tuple[str, int]:
        """A signed access token for ``principal`` and its lifetime in seconds."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": principal.client_id,
            "iat": now,
            "exp": now + self.lifetime,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(format_grants(principal.grants)),
            "hub_role": principal.role.value,
            "hub_institutions": sorted(principal.institutions),
            "hub_consortia": sorted(principal.consortia),
        }
        token = jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})
        return token, self.lifetime

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`Unauthorized` for expired, tampered or foreign ones.

        A token verified once is remembered until it expires (clients reuse a token for its
        whole lifetime; checking an ES256 signature costs about 0.3 ms).
        """
        cached = self._verified.get(token)
        if cached is not None and cached[0] > time.time():
            return cached[1]
        principal, expires = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            now = time.time()
            self._verified = {k: v for k, v in self._verified.items() if v[0] > now}
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
        self._verified[token] = (expires, principal)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token, self._public_key, algorithms=[ALGORITHM], audience=self.audience, issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]}, leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The access token has expired; request a new one") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The access token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("The access token was not issued by this hub") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The access token is invalid (malformed or bad signature)") from None
        try:
            return Principal(
                client_id=str(claims["sub"]),
                role=Role(claims.get("hub_role")),
                grants=grants_of(str(claims.get("scope", "")).split()),
                institutions=frozenset(map(str, claims.get("hub_institutions") or ())),
                consortia=frozenset(map(str, claims.get("hub_consortia") or ())),
            ), float(claims["exp"])
        except (ValueError, ScopeError, TypeError):
            raise Unauthorized("The access token carries claims this hub does not know") from None
