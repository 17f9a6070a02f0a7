"""The HL7 v2 ``ACK`` answering a received message (original-mode acknowledgement).

The incoming MSH is read by hand (not with python-hl7) so that an answer can be built
for anything received, garbage included: what cannot be read is left empty and the
sender gets an ``AR`` with a placeholder header.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from adapters.fields import DEFAULT_ZONE

#: HL7 table 0008 acknowledgement codes the hub answers with.
ACK_CODES = ("AA", "AE", "AR")
#: HL7 table 0357 message error conditions used in ERR-3.
ERROR_CODES = {
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "207": "Application internal error",
}
#: What the hub calls itself when the message names no receiving application.
DEFAULT_APPLICATION = "HUB"
_SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")
_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "~": "\\R\\", "&": "\\T\\"}


def escape(text: str) -> str:
    """Text made safe for a field with the standard encoding characters ``|^~\\&``."""
    flat = " ".join(part for part in _SEGMENT_BREAK.split(str(text)) if part)
    return "".join(_ESCAPES.get(char, char) for char in flat)


def _header(message: str) -> dict[int, list[str]]:
    """The fields of the incoming MSH by number (each a list of components); {} if there is none."""
    text = message.lstrip("\x0b\ufeff \t\r\n")
    first = _SEGMENT_BREAK.split(text, maxsplit=1)[0]
    if not first.startswith("MSH") or len(first) < 8:
        return {}
    separator, component = first[3], first[4]
    if separator.isalnum() or component in (separator, "\\"):
        return {}
    fields = first.split(separator)
    # fields[0] is "MSH" and fields[1] holds the encoding characters (MSH-2): MSH-n is fields[n - 1].
    return {number: fields[number - 1].split(component) for number in range(3, len(fields) + 1)}


def _field(header: dict[int, list[str]], number: int, default: str = "") -> str:
    """A header field re-encoded with the standard component separator (``^``)."""
    parts = header.get(number) or []
    text = "^".join(part.replace("|", "\\F\\").replace("^", "\\S\\") for part in parts).rstrip("^")
    return text[:200] or default


def control_id() -> str:
    """A new message control id (20 characters, the MSH-10 length of v2.5)."""
    return uuid.uuid4().hex[:20].upper()


def ack(message: str, code: str, text: str = "", *, error_code: str | None = None) -> str:
    """The ACK to ``message`` with MSA-1 ``code`` (AA, AE or AR) and MSA-3 ``text``.

    The header swaps the sending and receiving application and facility, keeps the
    processing id and version, and takes a new control id; MSA-2 is the original MSH-10.
    AE and AR carry an ERR segment (ERR-3 ``error_code`` of HL7 table 0357, default 207
    application internal error, or 200 unsupported message type for an AR without a header;
    ERR-4 severity E; ERR-8 the text). ``text`` must hold no personal data.
    """
    code = code.upper()
    if code not in ACK_CODES:
        raise ValueError(f"the acknowledgement code must be one of {', '.join(ACK_CODES)}")
    header = _header(message)
    if error_code is None:
        error_code = "200" if code == "AR" and not header else "207"
    trigger = (header.get(9) or ["", ""])[1:2] or [""]
    version = _field(header, 12, "2.5")
    now = datetime.now(DEFAULT_ZONE).strftime("%Y%m%d%H%M%S%z")
    msh = [
        "MSH",
        "^~\\&",
        _field(header, 5, DEFAULT_APPLICATION),
        _field(header, 6),
        _field(header, 3),
        _field(header, 4),
        now,
        "",
        f"ACK^{escape(trigger[0][:3]) or 'R01'}^ACK",
        control_id(),
        _field(header, 11, "P"),
        version,
    ]
    segments = ["|".join(msh), "|".join(["MSA", code, _field(header, 10), escape(text)[:80]])]
    if code != "AA":
        meaning = ERROR_CODES.get(error_code, "")
        if version[:3] in ("2.1", "2.2", "2.3", "2.4"):
            # Before v2.5 ERR-1 (error code and location) carries the code.
            segments.append(f"ERR|^^^{error_code}&{meaning}&HL70357")
        else:
            segments.append("|".join(["ERR", "", "", f"{error_code}^{meaning}^HL70357", "E", "", "", "", escape(text)]))
    return "\r".join(segments) + "\r"
