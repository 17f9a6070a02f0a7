"""Settings of the hub, read from ``HUB_*`` environment variables.

Defaults run the hub on an embedded SQLite file under ``./var/`` with no set-up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///./var/hub.db"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Runtime settings; build with :meth:`from_env` or directly in tests."""

    database_url: str = DEFAULT_DATABASE_URL
    #: Largest request body accepted, in bytes (larger bodies get 413).
    max_body_bytes: int = 16 * 1024 * 1024
    #: Public base URL of the FHIR endpoint (e.g. ``https://hub.example.cn/fhir``);
    #: when empty, it is derived from each request.
    public_base_url: str = ""
    #: Page size of search and history bundles when ``_count`` is absent, and its cap.
    default_page_size: int = 20
    max_page_size: int = 1000
    #: SQLAlchemy pool size for server databases.
    pool_size: int = 10
    #: IANA zone of dates and times written without an offset (search ranges), e.g. Asia/Shanghai.
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_env(cls) -> "Settings":
        """Read the settings from the process environment."""
        return cls(
            database_url=os.environ.get("HUB_DATABASE_URL") or DEFAULT_DATABASE_URL,
            max_body_bytes=_int_env("HUB_MAX_BODY_BYTES", 16 * 1024 * 1024),
            public_base_url=os.environ.get("HUB_PUBLIC_BASE_URL", "").rstrip("/"),
            default_page_size=_int_env("HUB_DEFAULT_PAGE_SIZE", 20),
            max_page_size=_int_env("HUB_MAX_PAGE_SIZE", 1000),
            pool_size=_int_env("HUB_DB_POOL_SIZE", 10),
            timezone=os.environ.get("HUB_TIMEZONE") or "Asia/Shanghai",
        )

    def sqlite_path(self) -> Path | None:
        """The database file when the URL names a SQLite file, else ``None``."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix):])
        return None
