"""Masking of personal data (ID numbers, phone numbers) in logs and messages.

Every log line of the hub goes through :class:`MaskingFormatter`, so an ID number that
slips into an exception message or a log argument is still masked on disk.
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
