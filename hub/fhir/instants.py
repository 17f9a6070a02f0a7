"""FHIR instants and HTTP dates."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

from hub.errors import InvalidRequest


def now_utc() -> datetime:
    """The current time in UTC, cut to milliseconds (what ``meta.lastUpdated`` shows)."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_instant(moment: datetime) -> str:
    """``2026-11-23T13:09:57.123Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_date(moment: datetime) -> str:
    """RFC 9110 date for ``Last-Modified``."""
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def parse_instant(name: str, raw: str) -> datetime:
    """Parse an instant parameter such as ``_since``; a date alone means midnight UTC."""
    text = raw.strip().replace("Z", "+00:00").replace(" ", "+")
    try:
        if len(text) == 10:
            moment = datetime.fromisoformat(text + "T00:00:00+00:00")
        else:
            moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise InvalidRequest(f"Parameter {name} needs a time zone (e.g. Z or +08:00)")
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise InvalidRequest(f"Parameter {name} must be a FHIR instant such as 2026-01-31T08:00:00+08:00") from None


def aware(moment: datetime) -> datetime:
    """A time as UTC-aware (SQLite returns the stored UTC times without their zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
