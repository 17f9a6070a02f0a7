"""Search values: string normalization, date ranges and number precision.

The same functions serve index extraction (stored values) and search parsing
(searched values), so both sides agree on what "equal" means.

* Strings compare case-, width- and accent-insensitively (``Müller`` ~ ``mull``,
  full-width ``ＳＭＩＴＨ`` ~ ``smith``); Chinese text is kept as it is.
* Dates are ranges of microseconds since 1970 (UTC), from the first to the last
  microsecond their precision covers: ``1970`` is the whole year. Values without a time
  zone are read in the hub's local zone (``HUB_TIMEZONE``, default Asia/Shanghai).
* Numbers carry their implicit precision: ``5.4`` stands for [5.35, 5.45).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from hub.errors import InvalidRequest
from hub.privacy import clip

#: Longest normalized string kept in the index (longer values match on their first part).
STRING_INDEX_LENGTH = 200
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Sentinels for open ends of ranges (a Period without end, a Range without high).
LOWEST = -(2**62)
HIGHEST = 2**62
NUMBER_LOWEST = -1e300
NUMBER_HIGHEST = 1e300

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DATE = re.compile(
    r"^(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
_local_zone: tzinfo = ZoneInfo("Asia/Shanghai")


def local_zone() -> tzinfo:
    """The hub's local zone (``HUB_TIMEZONE``)."""
    return _local_zone


def set_local_zone(name: str) -> None:
    """The zone of dates and times written without one (from ``HUB_TIMEZONE``)."""
    global _local_zone
    _local_zone = ZoneInfo(name)


def normalize_string(text: str) -> str:
    """Case-, width- and accent-folded text with runs of white space as one space."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFD", folded)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(unicodedata.normalize("NFC", stripped).split())[:STRING_INDEX_LENGTH]


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix`` (for range scans)."""
    last = ord(prefix[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000
    return prefix[:-1] + chr(min(last, 0x10FFFF))


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    return moment.replace(year=moment.year + index // 12, month=index % 12 + 1)


def date_range(text: str) -> tuple[int, int] | None:
    """The range a FHIR date, dateTime or instant covers, or None if it is not one."""
    match = _DATE.match(text)
    if match is None:
        return None
    parts = match.groupdict()
    zone: tzinfo = _local_zone
    if parts["tz"] == "Z":
        zone = timezone.utc
    elif parts["tz"]:
        sign = 1 if parts["tz"][0] == "+" else -1
        hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][4:6])
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        fraction = parts["f"] or ""
        start = datetime(
            int(parts["y"]), int(parts["m"] or 1), int(parts["d"] or 1),
            int(parts["H"] or 0), int(parts["M"] or 0), int(parts["S"] or 0),
            int((fraction + "000000")[:6]), tzinfo=zone,
        )
        if parts["f"]:
            end = start + timedelta(microseconds=10 ** max(0, 6 - len(fraction)))
        elif parts["S"]:
            end = start + timedelta(seconds=1)
        elif parts["M"]:
            end = start + timedelta(minutes=1)
        elif parts["d"]:
            end = start + timedelta(days=1)
        elif parts["m"]:
            end = _add_months(start, 1)
        else:
            end = start.replace(year=start.year + 1) if start.year < 9999 else start + timedelta(days=365)
    except (ValueError, OverflowError):
        return None
    return _micros(start), _micros(end) - 1


def micros_to_datetime(micros: int) -> datetime:
    """A UTC datetime from microseconds since 1970 (sentinels clamp to the calendar's ends)."""
    micros = max(min(micros, _micros(datetime(9999, 12, 31, tzinfo=timezone.utc))),
                 _micros(datetime(1, 1, 2, tzinfo=timezone.utc)))
    return _EPOCH + timedelta(microseconds=micros)


def split_prefix(value: str) -> tuple[str, str]:
    """``("ge", "1970")`` from ``ge1970``; the prefix defaults to ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def range_rule(
    prefix: str,
    low: Any,
    high: Any,
    start: Any,
    end: Any,
    exact: Any = None,
    *,
    both: Callable[[Any, Any], Any] = lambda a, b: a and b,
    either: Callable[[Any, Any], Any] = lambda a, b: a or b,
) -> Any:
    """Whether a stored range [low, high] matches the searched [start, end] by ``prefix`` (search.html#prefix).

    For numbers ``gt``/``lt``/``ge``/``le`` compare with the value as written (``exact``);
    dates compare with the searched range; ``ap`` ranges were widened by the parser. The
    operands may be numbers (in-memory matching) or SQL columns (with SQL ``both``/``either``).
    """
    below, above = (exact, exact) if exact is not None else (start, end)
    if prefix == "eq":
        return both(low >= start, high <= end)
    if prefix == "ne":
        return either(low < start, high > end)
    if prefix == "gt":
        return high > above
    if prefix == "lt":
        return low < below
    if prefix == "ge":
        return high >= below
    if prefix == "le":
        return low <= above
    if prefix == "sa":
        return low > above
    if prefix == "eb":
        return high < below
    return both(high >= start, low <= end)


def parse_date_value(name: str, raw: str) -> tuple[str, int, int]:
    """(prefix, low, high) of a date search value; 400 naming ``name`` when malformed."""
    if raw[:2].isalpha() and raw[:2] not in PREFIXES:
        raise InvalidRequest(f"Parameter {clip(name, 64)}: unknown prefix '{clip(raw[:2], 4)}' in '{clip(raw, 40)}'")
    prefix, text = split_prefix(raw)
    found = date_range(text)
    if found is None:
        raise InvalidRequest(
            f"Parameter {clip(name, 64)}: '{clip(raw, 40)}' is not a date (use YYYY, YYYY-MM, YYYY-MM-DD "
            "or YYYY-MM-DDThh:mm[:ss][Z|+hh:mm], optionally after a prefix such as ge)"
        )
    return prefix, found[0], found[1]


def parse_decimal(name: str, text: str) -> Decimal:
    """A decimal search value; 400 naming ``name`` when malformed."""
    if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text):
        raise InvalidRequest(f"Parameter {clip(name, 64)}: '{clip(text, 40)}' is not a number")
    try:
        return Decimal(text)
    except InvalidOperation:
        raise InvalidRequest(f"Parameter {clip(name, 64)}: '{clip(text, 40)}' is not a number") from None


def precision_range(value: Decimal) -> tuple[float, float]:
    """The range a decimal stands for by its precision: 5.4 → (5.35, 5.45)."""
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(value - half), float(value + half)


def parse_number_value(name: str, raw: str) -> tuple[str, Decimal]:
    """(prefix, value) of a number search value."""
    if raw[:2].isalpha() and raw[:2] not in PREFIXES:
        raise InvalidRequest(f"Parameter {clip(name, 64)}: unknown prefix '{clip(raw[:2], 4)}' in '{clip(raw, 40)}'")
    prefix, text = split_prefix(raw)
    return prefix, parse_decimal(name, text)
