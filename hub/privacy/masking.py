"""Masking of personal data (ID numbers, phone numbers, names) in logs, messages and displays.

Every log line of the hub goes through :class:`MaskingFormatter`, so an ID number that
slips into an exception message or a log argument is still masked on disk.
:func:`mask_id_number`, :func:`mask_phone` and :func:`mask_name` mask one known value
for display (dashboards, review queues).
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

# GB 11643 citizen ID numbers, 18 digits (last may be X) or legacy 15, not inside longer digit runs:
# the region code and the last digits stay, the birth date is hidden.
_ID_18 = re.compile(r"(?<![0-9])([1-9][0-9]{5})([0-9]{8})([0-9]{3}[0-9Xx])(?![0-9Xx])")
_ID_15 = re.compile(r"(?<![0-9])([1-9][0-9]{5})([0-9]{6})([0-9]{3})(?![0-9Xx])")
# Mainland mobile numbers, optionally with +86.
_MOBILE = re.compile(r"(?<![0-9])((?:\+?86[- ]?)?1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])")


def mask_text(text: str) -> str:
    """``text`` with ID numbers shown as ``110101********1234`` and mobiles as ``138****5678``."""
    text = _ID_18.sub(lambda m: m.group(1) + "********" + m.group(3), text)
    text = _ID_15.sub(lambda m: m.group(1) + "******" + m.group(3), text)
    return _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(3), text)


class MaskingFormatter(logging.Formatter):
    """A formatter whose whole output (message, arguments, traceback) is masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def logging_config() -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict: every log line (uvicorn's too) masked, to stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "masked": {"()": MaskingFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "masked", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            "alembic": {"level": "WARNING"},
        },
    }



def clip(text: object, limit: int) -> str:
    """``text`` masked, then cut to ``limit`` characters (cutting first could defeat the mask)."""
    masked = mask_text(str(text))
    return masked if len(masked) <= limit else masked[:limit] + "…"


def mask_id_number(value: str) -> str:
    """An ID number for display: ``110105********002X`` (18 digits), ``110105******002`` (15 digits).

    The region code and the last digits stay, the birth date is hidden (as :func:`mask_text`
    does). A value of another shape keeps at most its last 4 characters and hides at least
    three quarters of it.
    """
    text = "".join(value.split())
    if len(text) == 18:
        return text[:6] + "*" * 8 + text[-4:]
    if len(text) == 15:
        return text[:6] + "*" * 6 + text[-3:]
    return _mask_tail(text)


# A mainland mobile, optionally with a country prefix: +86 / 86 / 0086, separators - or space.
_MOBILE_DISPLAY = re.compile(r"^((?:\+86|0086|86)[- ]?)?(1[3-9][0-9])[- ]?([0-9]{4})[- ]?([0-9]{4})$")
# A landline with its area code: 010 / 02X (3 digits) or 0XXX (4 digits), separated or not.
_LANDLINE_SEPARATED = re.compile(r"^\(?(0[1-9][0-9]{1,2})\)?[- ]?([0-9][0-9 -]{5,10}[0-9])$")


def mask_phone(value: str) -> str:
    """A phone number for display: ``138****5678``, ``+86 138****5678``, ``0512-****3456``.

    Mobiles keep their country prefix as written, the first 3 and the last 4 digits;
    landlines keep their area code and the last 4 digits; anything else keeps at most
    its last 4 digits.
    """
    text = value.strip()
    mobile = _MOBILE_DISPLAY.match(text)
    if mobile:
        return (mobile.group(1) or "") + mobile.group(2) + "****" + mobile.group(4)
    landline = _landline_parts(text)
    if landline:
        area, number = landline
        return area + "-" + "*" * (len(number) - 4) + number[-4:]
    digits = "".join(ch for ch in text if ch.isdigit())
    return "*" * (len(digits) - 4) + digits[-4:] if len(digits) >= 7 else "*" * len(digits)


def _landline_parts(text: str) -> tuple[str, str] | None:
    """(area code, local number digits) of a mainland landline, or None."""
    match = _LANDLINE_SEPARATED.match(text)
    if match and not text.isdigit():
        number = re.sub(r"[- ]", "", match.group(2))
        return (match.group(1), number) if 7 <= len(number) <= 8 else None
    if text.isdigit() and text.startswith("0") and not text.startswith("00"):
        area_length = 3 if text[1] in "12" else 4
        area, number = text[:area_length], text[area_length:]
        return (area, number) if 7 <= len(number) <= 8 else None
    return None


def mask_name(name: str) -> str:
    """A person's name for display: ``张*``, ``王*明``, ``欧**明``; Latin names ``Z***``.

    Chinese names keep the first and (from three characters on) the last character; a
    middle dot of a transliterated name (``买买提·艾力``) stays. Other names keep their first letter.
    """
    text = name.strip()
    if not text:
        return ""
    if any(_is_cjk(ch) for ch in text):
        if len(text) == 1:
            return "*"
        if len(text) == 2:
            return text[0] + "*"
        middle = "".join(ch if ch in "·•・" else "*" for ch in text[1:-1])
        return text[0] + middle + text[-1]
    return text[0] + "***"


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\U00020000" <= ch <= "\U0003ffff"


def _mask_tail(text: str) -> str:
    """``text`` with all but its last ``min(4, len // 4)`` characters starred."""
    keep = min(4, len(text) // 4)
    return "*" * (len(text) - keep) + (text[-keep:] if keep else "")
