"""Where code mapping plugs into the pipeline (the terminology issue fills it in).

A :class:`Normalizer` gets every built resource before it is stored and may add standard
codings next to the local ones; its ``version`` is recorded on every resource
(``meta.tag`` ``urn:hub:mapping-version``) so re-normalization can find what an older
mapping produced.
"""

from __future__ import annotations

from typing import Any, Protocol


class Normalizer(Protocol):
    """Adds standard codes to a resource built from local codes."""

    #: The version of the mapping tables in force.
    version: str

    def normalize(self, resource: dict[str, Any]) -> dict[str, Any]:
        """The resource with standard codings added (the original local codings kept)."""


class PassThrough:
    """No mapping yet: local codes pass through with their local code systems."""

    version = "none"

    def normalize(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` unchanged."""
        return resource
