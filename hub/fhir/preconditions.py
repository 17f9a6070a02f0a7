"""``If-Match`` preconditions (RFC 9110 with FHIR's weak version ETags)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hub.errors import InvalidRequest, PreconditionFailed
from hub.fhir.repository import StoredResource
from hub.privacy import clip

_ETAG = re.compile(r'^(?:W/)?"?([0-9]{1,10})"?$')


@dataclass(frozen=True)
class IfMatch:
    """The versions a write may replace; ``None`` (``If-Match: *``) means any current one."""

    versions: frozenset[int] | None
    raw: str

    def check(self, label: str, current: StoredResource | None) -> None:
        """Raise 412 unless ``current`` satisfies the precondition."""
        if current is None or current.deleted:
            raise PreconditionFailed(f"If-Match {clip(self.raw, 40)} given, but {label} does not exist")
        if self.versions is not None and current.version_id not in self.versions:
            raise PreconditionFailed(
                f"If-Match {clip(self.raw, 40)} does not match the current version W/\"{current.version_id}\" of {label}"
            )

    def lost_race(self, label: str) -> PreconditionFailed:
        """The 412 for a write that lost a race after its check passed."""
        return PreconditionFailed(f"{label} changed while this request ran (If-Match {clip(self.raw, 40)}); read it again")


def parse_if_match(value: str | None) -> IfMatch | None:
    """Parse ``W/"3"``, ``"3"``, ``3``, lists of those, or ``*``; ``None`` if the header is absent."""
    if value is None:
        return None
    text = value.strip()
    if text == "*":
        return IfMatch(None, text)
    versions = set()
    for item in text.split(","):
        match = _ETAG.match(item.strip())
        if not match:
            raise InvalidRequest(f"If-Match must be a version ETag such as W/\"3\" (or *), got '{clip(value, 40)}'")
        versions.add(int(match.group(1)))
    return IfMatch(frozenset(versions), text)
