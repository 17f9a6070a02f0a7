"""Personal data: masking in logs and displays, and the data keys that protect it at rest.

The bottom layer of the hub: imports only the standard library and ``cryptography``.
"""

from __future__ import annotations

from hub.privacy.keyring import (
    BLIND_PREFIX,
    TOKEN_PREFIX,
    DataKeyring,
    KeyringError,
    is_token,
    key_id_of,
    resolve_keyring,
)
from hub.privacy.masking import (
    MaskingFormatter,
    clip,
    logging_config,
    mask_id_number,
    mask_name,
    mask_phone,
    mask_text,
)

__all__ = [
    "BLIND_PREFIX",
    "TOKEN_PREFIX",
    "DataKeyring",
    "KeyringError",
    "MaskingFormatter",
    "clip",
    "is_token",
    "key_id_of",
    "logging_config",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "mask_text",
    "resolve_keyring",
]
