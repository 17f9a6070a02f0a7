"""The data keyring: AES-256-GCM tokens bound to a context, key rotation, blind index, key files."""

from __future__ import annotations

import base64
import json
import logging
import re
import stat
from pathlib import Path

import pytest

from hub.privacy import DataKeyring, KeyringError, is_token, key_id_of, resolve_keyring

ID_NUMBER = "11010519491231002X"
TOKEN_SHAPE = re.compile(r"^hub:enc:v1:([A-Za-z0-9._-]+):([A-Za-z0-9_-]+)$")


def _key(byte: int, length: int = 32) -> str:
    return base64.b64encode(bytes([byte]) * length).decode()


def _keyring_json(**changes: object) -> str:
    data: dict[str, object] = {"active": "k1", "keys": {"k1": _key(1)}, "blind_index_key": _key(9)}
    data.update(changes)
    return json.dumps({key: value for key, value in data.items() if value is not None})


def test_round_trip_gives_a_compact_token_with_the_key_id() -> None:
    keyring = DataKeyring.generate("k1")
    token = keyring.encrypt(ID_NUMBER, "identifier")
    match = TOKEN_SHAPE.match(token)
    assert match and match.group(1) == "k1"
    assert len(base64.urlsafe_b64decode(match.group(2) + "==")) == 12 + len(ID_NUMBER) + 16
    assert ID_NUMBER not in token
    assert is_token(token) and keyring.is_token(token) and not is_token(ID_NUMBER)
    assert key_id_of(token) == "k1"
    assert keyring.decrypt(token, "identifier") == ID_NUMBER
    assert keyring.decrypt(keyring.encrypt("张三 ☎", "telecom"), "telecom") == "张三 ☎"


def test_same_value_encrypts_differently_each_time() -> None:
    keyring = DataKeyring.generate("k1")
    assert keyring.encrypt(ID_NUMBER, "identifier") != keyring.encrypt(ID_NUMBER, "identifier")


def test_the_context_is_bound() -> None:
    keyring = DataKeyring.generate("k1")
    token = keyring.encrypt(ID_NUMBER, "identifier")
    with pytest.raises(KeyringError, match="altered or belongs to another context") as caught:
        keyring.decrypt(token, "telecom")
    assert ID_NUMBER not in str(caught.value)


def test_a_tampered_token_fails_without_showing_the_value() -> None:
    keyring = DataKeyring.generate("k1")
    token = keyring.encrypt(ID_NUMBER, "identifier")
    prefix, data = token.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[15] ^= 0x01
    tampered = prefix + ":" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(KeyringError, match="altered") as caught:
        keyring.decrypt(tampered, "identifier")
    assert ID_NUMBER not in str(caught.value)
    with pytest.raises(KeyringError, match="truncated"):
        keyring.decrypt(prefix + ":" + data[:20], "identifier")
    with pytest.raises(KeyringError, match="base64url"):
        keyring.decrypt(prefix + ":" + data[:-2] + "+/", "identifier")
    with pytest.raises(KeyringError, match="version"):
        keyring.decrypt(token.replace(":v1:", ":v9:"), "identifier")
    with pytest.raises(KeyringError, match="not an encrypted value"):
        keyring.decrypt(ID_NUMBER, "identifier")


def test_unknown_key_id_is_named() -> None:
    token = DataKeyring.generate("old").encrypt(ID_NUMBER, "identifier")
    with pytest.raises(KeyringError, match="unknown data key 'old'"):
        DataKeyring.generate("other").decrypt(token, "identifier")


def test_rotation_keeps_old_keys_and_the_blind_key() -> None:
    first = DataKeyring.generate("k1")
    old_token = first.encrypt(ID_NUMBER, "identifier")
    rotated = first.with_new_active_key("k2")
    assert rotated.active == "k2" and set(rotated.keys) == {"k1", "k2"}
    assert first.active == "k1" and set(first.keys) == {"k1"}  # unchanged
    assert rotated.decrypt(old_token, "identifier") == ID_NUMBER
    new_token = rotated.encrypt(ID_NUMBER, "identifier")
    assert key_id_of(new_token) == "k2"
    assert rotated.blind("citizen-id", ID_NUMBER) == first.blind("citizen-id", ID_NUMBER)
    with pytest.raises(KeyringError, match="already exists"):
        rotated.with_new_active_key("k1")


def test_default_key_ids_are_utc_timestamps_and_unique_on_rotation() -> None:
    keyring = DataKeyring.generate()
    assert re.fullmatch(r"\d{14}", keyring.active)
    twice = keyring.with_new_active_key().with_new_active_key()
    assert len(twice.keys) == 3


def test_save_and_load_round_trip_with_mode_0600(tmp_path: Path) -> None:
    keyring = DataKeyring.generate("k1").with_new_active_key("k2")
    path = tmp_path / "secrets" / "nested" / "keys.json"
    keyring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["keys.json"]  # no temporary left behind
    data = json.loads(path.read_text())
    assert set(data) == {"active", "keys", "blind_index_key"} and data["active"] == "k2"
    loaded = DataKeyring.load(path)
    assert loaded.to_json() == keyring.to_json()
    assert loaded.decrypt(keyring.encrypt(ID_NUMBER, "identifier"), "identifier") == ID_NUMBER
    assert DataKeyring.from_json(keyring.to_json()).keys == keyring.keys
    keyring.with_new_active_key("k3").save(path)  # replacing keeps the mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DataKeyring.load(path).active == "k3"


def test_repr_shows_no_key_material() -> None:
    keyring = DataKeyring.generate("k1")
    shown = repr(keyring)
    assert "k1" in shown
    assert base64.b64encode(keyring.keys["k1"]).decode() not in shown
    assert repr(keyring.keys["k1"]) not in shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (_keyring_json(active=None), "'active'.*missing"),
        (_keyring_json(active="k2"), "active key 'k2' is not among the keys"),
        (_keyring_json(keys={}), "'keys' must be a non-empty object"),
        (_keyring_json(keys={"k1": _key(1, 16)}), "key 'k1' is 16 bytes, expected 32"),
        (_keyring_json(keys={"k1": "not*base64!"}), "key 'k1' is not valid base64"),
        (_keyring_json(keys={"k:1": _key(1)}, active="k:1"), "key id must be"),
        (_keyring_json(blind_index_key=None), "'blind_index_key' is missing"),
        (_keyring_json(blind_index_key=_key(9, 31)), "'blind_index_key' is 31 bytes"),
    ],
)
def test_malformed_keyrings_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        DataKeyring.from_json(text)
    assert isinstance(caught.value, KeyringError)
    shown = str(caught.value)
    for byte, length in ((1, 32), (1, 16), (9, 32), (9, 31)):
        assert _key(byte, length) not in shown
    assert "not*base64" not in shown


def test_a_missing_or_malformed_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read the data keyring file"):
        DataKeyring.load(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text(_keyring_json(keys={"k1": _key(1, 24)}))
    with pytest.raises(KeyringError, match=r"24 bytes.*bad\.json"):
        DataKeyring.load(bad)


def test_blind_index_is_deterministic_and_keyed_by_kind_and_key() -> None:
    keyring = DataKeyring.from_json(_keyring_json())
    blind = keyring.blind("citizen-id", ID_NUMBER)
    assert re.fullmatch(r"hub:blind:[0-9a-f]{32}", blind)
    assert blind == DataKeyring.from_json(_keyring_json()).blind("citizen-id", ID_NUMBER)
    assert blind != keyring.blind("phone", ID_NUMBER)
    assert blind != keyring.blind("citizen-id", "110105194912310021")
    other = DataKeyring.from_json(_keyring_json(blind_index_key=_key(8)))
    assert blind != other.blind("citizen-id", ID_NUMBER)
    # the data keys play no part
    assert blind == DataKeyring.from_json(_keyring_json(keys={"k1": _key(2)})).blind("citizen-id", ID_NUMBER)


def test_resolve_prefers_json_then_file(tmp_path: Path) -> None:
    from_env = DataKeyring.generate("env")
    in_file = DataKeyring.generate("file")
    path = tmp_path / "keys.json"
    in_file.save(path)
    dev = tmp_path / "dev" / "keys.json"
    assert resolve_keyring(from_env.to_json(), str(path), dev, True).active == "env"
    assert resolve_keyring(None, str(path), dev, True).active == "file"
    assert resolve_keyring("  ", path, dev, True).active == "file"
    assert not dev.exists()
    with pytest.raises(KeyringError, match="HUB_DATA_KEYS"):
        resolve_keyring('{"active": "x"}', None, dev, False)


def test_resolve_in_production_without_keys_refuses(tmp_path: Path) -> None:
    dev = tmp_path / "dev" / "keys.json"
    with pytest.raises(KeyringError, match="HUB_DATA_KEYS_FILE"):
        resolve_keyring(None, None, dev, True)
    with pytest.raises(KeyringError, match="HUB_DATA_KEYS_FILE"):
        resolve_keyring("", "", None, True)
    assert not dev.exists()


def test_resolve_in_development_creates_the_key_file_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dev = tmp_path / "var" / "data-keys.json"
    with caplog.at_level(logging.WARNING, logger="hub.privacy.keyring"):
        first = resolve_keyring(None, None, dev, False)
        second = resolve_keyring(None, None, dev, False)
    assert stat.S_IMODE(dev.stat().st_mode) == 0o600
    assert second.to_json() == first.to_json() == dev.read_text()
    assert second.decrypt(first.encrypt(ID_NUMBER, "identifier"), "identifier") == ID_NUMBER
    warnings = [r for r in caplog.records if "development key" in r.getMessage()]
    assert len(warnings) == 1 and "HUB_DATA_KEYS_FILE" in warnings[0].getMessage()


def test_resolve_in_development_without_a_path_keeps_the_key_in_memory() -> None:
    keyring = resolve_keyring(None, None, None, False)
    assert keyring.decrypt(keyring.encrypt("x", "telecom"), "telecom") == "x"
