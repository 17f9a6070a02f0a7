"""The FHIR R4 resource types the hub stores, and identifier rules."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources as importlib_resources

import orjson

from hub.errors import InvalidRequest, NotFound

#: FHIR ``id``: 1-64 characters of letters, digits, '-' and '.'.
ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
TYPE_PATTERN = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def load_definition(name: str) -> bytes:
    """Bytes of a bundled definition file under ``hub/fhir/definitions``."""
    return (importlib_resources.files("hub.fhir") / "definitions" / name).read_bytes()


@lru_cache(maxsize=1)
def resource_types() -> frozenset[str]:
    """Every resource type the hub accepts."""
    return frozenset(orjson.loads(load_definition("resource-types.json"))["types"])


def require_type(resource_type: str) -> str:
    """Return ``resource_type`` if the hub stores it, else raise NotFound (404)."""
    if resource_type not in resource_types():
        shown = resource_type if TYPE_PATTERN.match(resource_type) else "(invalid)"
        raise NotFound(f"Unknown resource type '{shown}'")
    return resource_type


def require_id(resource_id: str) -> str:
    """Return ``resource_id`` if it is a valid FHIR id, else raise InvalidRequest."""
    if not ID_PATTERN.match(resource_id):
        raise InvalidRequest(
            "Invalid resource id: ids are 1-64 characters of A-Z, a-z, 0-9, '-' and '.'",
        )
    return resource_id
