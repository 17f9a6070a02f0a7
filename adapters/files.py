"""Which directories of the hub server adapters may touch (set by the hub's operator, not by a source).

A source is registered by hospital IT; the files it names must stay inside directories the
operator configured, or a source could read (or, for a drop directory, move) any file the hub
can reach: ``HUB_PROFILE_DIRS`` for profile files, ``HUB_DROP_DIRS`` for HL7 drop directories
(``os.pathsep``-separated lists).
"""

from __future__ import annotations

import os
from pathlib import Path


def configured_dirs(variable: str, default: str = "") -> list[Path]:
    """The directories listed in an environment variable, resolved."""
    listed = os.environ.get(variable, default)
    return [Path(item).resolve() for item in listed.split(os.pathsep) if item.strip()]


def inside(path: Path, roots: list[Path]) -> bool:
    """Is ``path`` (resolved, links followed) one of ``roots`` or under one of them?"""
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in roots)
