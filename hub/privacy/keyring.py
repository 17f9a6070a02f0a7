"""Data keys of personal data protected at rest (PIPL Art. 51): AES-256-GCM and a blind index.

A :class:`DataKeyring` holds AES-256 keys by id, one of them active (new values are encrypted
under it, old ones stay for decryption after a rotation), and a separate HMAC-SHA256 key
for the blind index, the deterministic keyed hash the hub indexes and searches by.

Keyring JSON (file or ``HUB_DATA_KEYS``)::

    {"active": "20250101000000",
     "keys": {"20250101000000": "<base64 of 32 bytes>"},
     "blind_index_key": "<base64 of 32 bytes>"}

An encrypted value is one compact string, ``hub:enc:v1:<key id>:<base64url(nonce + ciphertext + tag)>``;
its context (the kind of value: ``identifier``, ``telecom``) is bound as associated data,
so a value cannot be moved to another kind. No message of this module contains key material
or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "hub:enc:"
BLIND_PREFIX = "hub:blind:"
_VERSION = "v1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+$")
#: Development keyring files ("" for in-memory) already announced by a warning in this process.
_WARNED_DEV_FILES: set[str] = set()


class KeyringError(ValueError):
    """A keyring that cannot be read or used, or a token that cannot be decrypted."""


def is_token(value: object) -> bool:
    """Whether ``value`` is an encrypted token (``hub:enc:...``)."""
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)


def key_id_of(token: str) -> str:
    """The id of the key a token was encrypted under. Raises KeyringError if not a token."""
    return _split_token(token)[0]


def _split_token(token: str) -> tuple[str, str]:
    if not is_token(token):
        raise KeyringError("not an encrypted value (expected the prefix 'hub:enc:')")
    parts = token[len(TOKEN_PREFIX):].split(":")
    if len(parts) != 3:
        raise KeyringError("malformed encrypted value (expected hub:enc:v1:<key id>:<data>)")
    version, key_id, data = parts
    if version != _VERSION:
        raise KeyringError(f"unsupported encrypted value version {version[:10]!r} (this hub reads {_VERSION})")
    if not _KEY_ID.match(key_id):
        raise KeyringError("malformed encrypted value: bad key id")
    return key_id, data


def _default_key_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode_key(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise KeyringError(f"data keyring: {what} must be a base64 string")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"data keyring: {what} is not valid base64") from None
    if len(raw) != _KEY_BYTES:
        raise KeyringError(f"data keyring: {what} is {len(raw)} bytes, expected {_KEY_BYTES} (AES-256 / HMAC-SHA256)")
    return raw


@dataclass(frozen=True, repr=False, eq=False)
class DataKeyring:
    """AES-256-GCM data keys by id (one active) and the blind-index key. Immutable.

    Build with :meth:`generate`, :meth:`from_json`, :meth:`load` or :func:`resolve_keyring`.
    """

    active: str
    keys: Mapping[str, bytes]
    blind_index_key: bytes
    _ciphers: dict[str, AESGCM] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("data keyring: no keys")
        for key_id, key in self.keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                raise KeyringError("data keyring: a key id must be 1-64 characters of A-Z a-z 0-9 . _ -")
            if not isinstance(key, bytes) or len(key) != _KEY_BYTES:
                raise KeyringError(f"data keyring: key {key_id!r} must be {_KEY_BYTES} bytes")
        if self.active not in self.keys:
            raise KeyringError(f"data keyring: the active key {self.active!r} is not among the keys")
        if not isinstance(self.blind_index_key, bytes) or len(self.blind_index_key) != _KEY_BYTES:
            raise KeyringError(f"data keyring: the blind index key must be {_KEY_BYTES} bytes")
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))
        object.__setattr__(self, "_ciphers", {key_id: AESGCM(key) for key_id, key in self.keys.items()})

    def __repr__(self) -> str:  # never show key material
        return f"DataKeyring(active={self.active!r}, key_ids={sorted(self.keys)!r})"

    # -- building ------------------------------------------------------------------------

    @classmethod
    def generate(cls, key_id: str | None = None) -> DataKeyring:
        """A new keyring: one fresh active key (id: ``key_id`` or UTC ``YYYYMMDDHHMMSS``) and a blind key."""
        key_id = key_id or _default_key_id()
        return cls(key_id, {key_id: secrets.token_bytes(_KEY_BYTES)}, secrets.token_bytes(_KEY_BYTES))

    def with_new_active_key(self, key_id: str | None = None) -> DataKeyring:
        """Rotation: a keyring with a fresh active key; old keys kept for decryption, the blind key unchanged.

        A default id that is already taken (two rotations in one second) gets a ``-2``, ``-3``... suffix.
        """
        if key_id is None:
            base = key_id = _default_key_id()
            suffix = 2
            while key_id in self.keys:
                key_id, suffix = f"{base}-{suffix}", suffix + 1
        elif key_id in self.keys:
            raise KeyringError(f"data keyring: key id {key_id!r} already exists")
        keys = {**self.keys, key_id: secrets.token_bytes(_KEY_BYTES)}
        return DataKeyring(key_id, keys, self.blind_index_key)

    @classmethod
    def from_json(cls, text: str | bytes) -> DataKeyring:
        """Parse keyring JSON. Raises KeyringError (a ValueError) that names what is wrong, not the keys."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise KeyringError("data keyring is not valid JSON") from None
        if not isinstance(data, dict):
            raise KeyringError("data keyring must be a JSON object with 'active', 'keys' and 'blind_index_key'")
        active, keys = data.get("active"), data.get("keys")
        if not isinstance(keys, dict) or not keys:
            raise KeyringError("data keyring: 'keys' must be a non-empty object of key id -> base64 key")
        if not isinstance(active, str) or not active:
            raise KeyringError("data keyring: 'active' (the id of the key new values are encrypted under) is missing")
        if active not in keys:
            raise KeyringError(f"data keyring: the active key {active[:64]!r} is not among the keys")
        if "blind_index_key" not in data:
            raise KeyringError("data keyring: 'blind_index_key' is missing")
        decoded = {}
        for key_id, value in keys.items():
            if not _KEY_ID.match(key_id):
                raise KeyringError("data keyring: a key id must be 1-64 characters of A-Z a-z 0-9 . _ -")
            decoded[key_id] = _decode_key(value, f"key {key_id!r}")
        return cls(active, decoded, _decode_key(data["blind_index_key"], "'blind_index_key'"))

    def to_json(self) -> str:
        """The keyring as JSON (contains the keys: store it like a password)."""
        return json.dumps(
            {
                "active": self.active,
                "keys": {key_id: _b64(key) for key_id, key in self.keys.items()},
                "blind_index_key": _b64(self.blind_index_key),
            },
            indent=2,
        ) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DataKeyring:
        """Read a keyring file. Raises KeyringError if it is missing or malformed."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise KeyringError(f"cannot read the data keyring file {os.fspath(path)!r}: {exc.strerror}") from None
        try:
            return cls.from_json(text)
        except KeyringError as exc:
            raise KeyringError(f"{exc} (file {os.fspath(path)!r})") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keyring file atomically, mode 0600; missing parent directories are created (0700)."""
        target = Path(path)
        temporary = self._write_temporary(target)
        try:
            os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    def _save_new(self, path: Path) -> bool:
        """Write the keyring file only if none exists (atomic); False when another one was there."""
        temporary = self._write_temporary(path)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then write
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
        finally:
            temporary.unlink(missing_ok=True)
        return True

    def _write_temporary(self, target: Path) -> Path:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(self.to_json())
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    # -- using ---------------------------------------------------------------------------

    is_token = staticmethod(is_token)
    key_id_of = staticmethod(key_id_of)

    def encrypt(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted under the active key: ``hub:enc:v1:<key id>:<base64url>``.

        ``context`` (e.g. ``identifier``, ``telecom``) is bound as associated data: decryption
        needs the same context.
        """
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._ciphers[self.active].encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        data = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{TOKEN_PREFIX}{_VERSION}:{self.active}:{data}"

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of a token. Raises KeyringError (unknown key, tampered data, wrong context)."""
        key_id, data = _split_token(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyringError(f"cannot decrypt: unknown data key {key_id!r} (is the keyring complete?)")
        if not _BASE64URL.match(data):
            raise KeyringError("cannot decrypt: the encrypted data is not base64url")
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise KeyringError("cannot decrypt: the encrypted data is not base64url") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise KeyringError("cannot decrypt: the encrypted data is truncated")
        try:
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode("utf-8"))
        except InvalidTag:
            raise KeyringError(
                f"cannot decrypt: the data under key {key_id!r} was altered or belongs to another context than "
                f"{context[:40]!r}"
            ) from None
        return plain.decode("utf-8")

    def blind(self, kind: str, normalized_value: str) -> str:
        """The blind index of a normalized value: ``hub:blind:`` + 32 hex digits of HMAC-SHA256 (deterministic)."""
        message = (kind + "\x00" + normalized_value).encode("utf-8")
        return BLIND_PREFIX + hmac.new(self.blind_index_key, message, hashlib.sha256).hexdigest()[:32]


def resolve_keyring(
    keys_json: str | None, keys_file: str | os.PathLike[str] | None, dev_default_path: Path | None, production: bool
) -> DataKeyring:
    """The keyring to run with: ``keys_json`` (HUB_DATA_KEYS) first, then ``keys_file`` (HUB_DATA_KEYS_FILE).

    With neither: in production a KeyringError; otherwise the development keyring file at
    ``dev_default_path``, created on first use (an in-memory keyring when no path is given),
    with a warning that a generated development key is in use.
    """
    if keys_json and keys_json.strip():
        try:
            return DataKeyring.from_json(keys_json)
        except KeyringError as exc:
            raise KeyringError(f"{exc} (HUB_DATA_KEYS)") from None
    if keys_file and os.fspath(keys_file).strip():
        return DataKeyring.load(keys_file)
    if production:
        raise KeyringError(
            "no data keyring configured: set HUB_DATA_KEYS_FILE to a keyring file (mode 0600) or HUB_DATA_KEYS "
            "to its JSON; personal data cannot be stored without it"
        )
    if dev_default_path is None:
        _warn_dev("", "an in-memory key (values encrypted now cannot be read after this process ends)")
        return DataKeyring.generate()
    path = Path(dev_default_path)
    if not path.exists():
        created = DataKeyring.generate()
        if created._save_new(path):
            _warn_dev(os.fspath(path), f"the development keyring {os.fspath(path)!r}, just created")
            return created
    _warn_dev(os.fspath(path), f"the development keyring {os.fspath(path)!r}")
    return DataKeyring.load(path)


def _warn_dev(source: str, what: str) -> None:
    if source in _WARNED_DEV_FILES:
        return
    _WARNED_DEV_FILES.add(source)
    logger.warning(
        "Personal data is encrypted with a generated development key: %s. "
        "Set HUB_DATA_KEYS_FILE in production.", what
    )
