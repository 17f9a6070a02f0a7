"""JSON in and out of the hub.

Incoming bodies are parsed with decimals kept exact (FHIR ``decimal`` values such as
``1.50`` must keep their precision); outgoing JSON is written with orjson, embedding
stored resource bytes as they are (``orjson.Fragment``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from hub.errors import InvalidRequest

Fragment = orjson.Fragment


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot serialize {type(value).__name__}")


def loads(data: bytes | str) -> Any:
    """Parse a request body; decimals become :class:`Decimal`. Raises InvalidRequest."""
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {_short(exc)}") from None
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply") from None


def loads_stored(data: bytes) -> Any:
    """Parse JSON the hub wrote itself (fast path; decimals as exact Decimal)."""
    return json.loads(data, parse_float=Decimal)


def dumps(value: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes (Chinese text unescaped)."""
    return orjson.dumps(value, default=_default)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"
