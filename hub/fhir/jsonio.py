"""JSON in and out of the hub.

Incoming bodies are parsed with decimals kept exact (FHIR ``decimal`` values such as
``1.50`` must keep their precision, and integers past 64 bits stay exact too); outgoing
JSON is written with orjson, embedding stored resource bytes as they are
(``orjson.Fragment``). Text FHIR forbids — unpaired UTF-16 surrogates and control
characters other than tab, CR and LF — is refused at parse time.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from hub.errors import InvalidRequest
from hub.privacy import clip

Fragment = orjson.Fragment

_INT64 = 2**63
#: Escapes that may hide forbidden text: surrogates (\\uD800-\\uDFFF) and control characters.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|00[01])")
_FORBIDDEN_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"cannot serialize {type(value).__name__}")


def _parse_int(text: str) -> int | Decimal:
    value = int(text)
    return value if -_INT64 <= value < _INT64 else Decimal(text)


def loads(data: bytes | str) -> Any:
    """Parse a request body; decimals become :class:`Decimal`. Raises InvalidRequest."""
    try:
        value = json.loads(data, parse_float=Decimal, parse_int=_parse_int)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {clip(exc, 200)}") from None
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply") from None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _SUSPECT_ESCAPE.search(raw):
        check_text(value)
    return value


def check_text(node: Any) -> None:
    """Refuse (400) a parsed document holding an unpaired surrogate or a control character FHIR forbids."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise InvalidRequest("Request body contains an unpaired UTF-16 surrogate (\\uD800-\\uDFFF)")
            if _FORBIDDEN_CONTROL.search(item):
                raise InvalidRequest("Request body contains a control character; FHIR strings allow only tab, CR and LF")


def loads_stored(data: bytes) -> Any:
    """Parse JSON the hub wrote itself (decimals as exact Decimal)."""
    return json.loads(data, parse_float=Decimal, parse_int=_parse_int)


def dumps(value: Any) -> bytes:
    """Serialize to compact UTF-8 JSON bytes (Chinese text unescaped)."""
    return orjson.dumps(value, default=_default)


def canonical(value: Any) -> bytes:
    """Serialization with sorted keys, for comparing content (decimal precision counts)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_SORT_KEYS)


