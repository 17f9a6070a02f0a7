"""HL7 v2 text: decoding received bytes, segment separators, batches and date-times."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import hl7.util

from adapters.fields import DEFAULT_ZONE, parse_datetime

_BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
_SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")
_OUTER_JUNK = "\x0b\x1c\ufeff\x00 \t\r\n"
_HL7_TIME = re.compile(r"^(\d{8})(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


def _quiet(record: logging.LogRecord) -> bool:
    return False


# python-hl7 logs the text of a field it cannot unescape (patient data, too): keep it out of the hub's
# logs (a filter, which survives logging.config.dictConfig, unlike ``disabled`` or a level).
hl7.util.logger.addFilter(_quiet)


def decode_message(data: bytes) -> tuple[str, str]:
    """The text of received bytes and its encoding: UTF-8, else GB18030 (common in Chinese hospitals).

    NUL characters are dropped (they mean nothing in HL7 and PostgreSQL refuses them in JSON).
    """
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding).replace("\x00", ""), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace").replace("\x00", ""), "utf-8"


def _lines(text: str) -> list[str]:
    return [line for line in _SEGMENT_BREAK.split(text.strip(_OUTER_JUNK)) if line.strip()]


def normalise(message: str) -> str:
    """One message with ``\\r`` segment separators (``\\n`` and ``\\r\\n`` accepted), blank lines dropped."""
    return "\r".join(_lines(message))


def split_messages(text: str) -> list[str]:
    """The messages of a file or batch (a new one at each MSH; FHS/BHS/BTS/FTS dropped)."""
    messages: list[list[str]] = []
    for line in _lines(text):
        head = line[:3]
        if head in _BATCH_SEGMENTS:
            continue
        if head == "MSH" or not messages:
            messages.append([line])
        else:
            messages[-1].append(line)
    return ["\r".join(lines) for lines in messages]


def hl7_datetime(text: str, zone: ZoneInfo = DEFAULT_ZONE) -> datetime:
    """An HL7 DTM (``YYYYMMDD[HH[MM[SS[.S]]]][+ZZZZ]``) as an aware date-time (local times in ``zone``).

    ValueError for anything else (less than a day's precision included).
    """
    found = _HL7_TIME.match(text.strip())
    if not found:
        raise ValueError(f"'{text[:40]}' is not an HL7 date-time")
    day, hour, minute, second, fraction, offset = found.groups()
    return parse_datetime(f"{day}{hour or '00'}{minute or '00'}{second or ''}{fraction or ''}{offset or ''}", zone)
