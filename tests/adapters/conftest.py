"""Adapter tests: each test's temporary directory is a drop directory the operator opened."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def drop_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DROP_DIRS", str(tmp_path))
