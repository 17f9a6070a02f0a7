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


def _flag_env(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    return default if not raw else raw not in ("off", "0", "false", "no")


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
    #: ``production`` refuses to start without configured signing and data keys;
    #: ``development`` generates them under ``key_dir`` on first use.
    environment: str = "development"
    #: Where development keys are generated (never used in production).
    key_dir: str = "./var/keys"
    #: PEM file of the EC P-256 key that signs access tokens (ES256).
    signing_key_file: str = ""
    #: Data keys (AES-GCM keys with ids and the blind-index key) as JSON, or a file holding it.
    data_keys: str = ""
    data_keys_file: str = ""
    #: Access tokens: lifetime, issuer and audience (the FHIR API).
    token_lifetime_seconds: int = 300
    token_issuer: str = "urn:hub"
    token_audience: str = "urn:hub:fhir"
    #: AuditEvents are kept this long (network-log rules ask for at least 180 days).
    audit_retention_days: int = 180
    #: Limits: entries in one Bundle, seconds per database statement, requests per client per minute.
    max_bundle_entries: int = 10_000
    query_timeout_seconds: int = 30
    rate_limit_per_minute: int = 1200
    #: EMPI: the matching rules (YAML; default: the hub's own), the region whose overrides apply,
    #: the 6-digit administrative code that starts every regional identifier (区域主索引号), and
    #: whether the API process runs the matching worker in the background.
    empi_rules_file: str = ""
    empi_region: str = ""
    empi_region_code: str = "320583"
    empi_worker: bool = True
    #: Subscriptions (rest-hook): whether the API process matches writes and sends notifications,
    #: attempts per notification before the Subscription goes to ``error``, the first retry delay
    #: (doubled after each failure, at most an hour) and the endpoint's time to answer.
    subscription_worker: bool = True
    subscription_max_attempts: int = 10
    subscription_retry_seconds: int = 10
    subscription_timeout_seconds: int = 10
    #: URL prefixes every Subscription endpoint must start with (empty: any endpoint).
    subscription_endpoints: tuple[str, ...] = ()
    #: Bulk Data export: where the NDJSON files are written, whether the API process runs export
    #: jobs, how long finished files are kept, resources per file, and jobs one client may have open.
    export_dir: str = "./var/exports"
    export_worker: bool = True
    export_retention_hours: int = 24
    export_file_resources: int = 100_000
    export_jobs_per_client: int = 5
    #: Tele-diagnosis: whether the API process takes in new exams and runs the SLA sweep, and how often
    #: the sweep runs.
    tele_worker: bool = True
    tele_sweep_seconds: int = 30
    #: Dashboards: whether the API process reads new writes into the indicators' facts in the background
    #: (without it, each evaluation catches up first).
    dashboard_worker: bool = True

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
            environment=(os.environ.get("HUB_ENV") or "development").strip().lower(),
            key_dir=os.environ.get("HUB_KEY_DIR") or "./var/keys",
            signing_key_file=os.environ.get("HUB_SIGNING_KEY_FILE", ""),
            data_keys=os.environ.get("HUB_DATA_KEYS", ""),
            data_keys_file=os.environ.get("HUB_DATA_KEYS_FILE", ""),
            token_lifetime_seconds=_int_env("HUB_TOKEN_LIFETIME_SECONDS", 300),
            token_issuer=os.environ.get("HUB_TOKEN_ISSUER") or "urn:hub",
            token_audience=os.environ.get("HUB_TOKEN_AUDIENCE") or "urn:hub:fhir",
            audit_retention_days=_int_env("HUB_AUDIT_RETENTION_DAYS", 180),
            max_bundle_entries=_int_env("HUB_MAX_BUNDLE_ENTRIES", 10_000),
            query_timeout_seconds=_int_env("HUB_QUERY_TIMEOUT_SECONDS", 30),
            rate_limit_per_minute=_int_env("HUB_RATE_LIMIT_PER_MINUTE", 1200),
            empi_rules_file=os.environ.get("HUB_EMPI_RULES_FILE", ""),
            empi_region=os.environ.get("HUB_EMPI_REGION", ""),
            empi_region_code=os.environ.get("HUB_EMPI_REGION_CODE") or "320583",
            empi_worker=_flag_env("HUB_EMPI_WORKER", True),
            subscription_worker=_flag_env("HUB_SUBSCRIPTION_WORKER", True),
            subscription_max_attempts=_int_env("HUB_SUBSCRIPTION_MAX_ATTEMPTS", 10),
            subscription_retry_seconds=_int_env("HUB_SUBSCRIPTION_RETRY_SECONDS", 10),
            subscription_timeout_seconds=_int_env("HUB_SUBSCRIPTION_TIMEOUT_SECONDS", 10),
            subscription_endpoints=tuple(p.strip() for p in os.environ.get("HUB_SUBSCRIPTION_ENDPOINTS", "").split(",")
                                         if p.strip()),
            export_dir=os.environ.get("HUB_EXPORT_DIR") or "./var/exports",
            export_worker=_flag_env("HUB_EXPORT_WORKER", True),
            export_retention_hours=_int_env("HUB_EXPORT_RETENTION_HOURS", 24),
            export_file_resources=_int_env("HUB_EXPORT_FILE_RESOURCES", 100_000),
            export_jobs_per_client=_int_env("HUB_EXPORT_JOBS_PER_CLIENT", 5),
            tele_worker=_flag_env("HUB_TELE_WORKER", True),
            tele_sweep_seconds=_int_env("HUB_TELE_SWEEP_SECONDS", 30),
            dashboard_worker=_flag_env("HUB_DASHBOARD_WORKER", True),
        )

    def __post_init__(self) -> None:
        if self.environment not in ("development", "production"):
            raise ValueError(f"HUB_ENV must be 'development' or 'production', got {self.environment!r}")
        if self.audit_retention_days < 180:
            raise ValueError("HUB_AUDIT_RETENTION_DAYS must be at least 180 (network-log retention rules)")
        if not 30 <= self.token_lifetime_seconds <= 3600:
            raise ValueError("HUB_TOKEN_LIFETIME_SECONDS must be between 30 and 3600")
        if self.subscription_max_attempts < 1 or self.subscription_retry_seconds < 1 \
                or self.subscription_timeout_seconds < 1:
            raise ValueError("HUB_SUBSCRIPTION_MAX_ATTEMPTS, _RETRY_SECONDS and _TIMEOUT_SECONDS must be at least 1")
        if self.export_retention_hours < 1 or self.export_file_resources < 1 or self.export_jobs_per_client < 1:
            raise ValueError("HUB_EXPORT_RETENTION_HOURS, _FILE_RESOURCES and _JOBS_PER_CLIENT must be at least 1")
        if self.tele_sweep_seconds < 1:
            raise ValueError("HUB_TELE_SWEEP_SECONDS must be at least 1")
        if not (len(self.empi_region_code) == 6 and self.empi_region_code.isdigit()):
            raise ValueError("HUB_EMPI_REGION_CODE must be a 6-digit administrative division code (GB/T 2260)")

    @property
    def production(self) -> bool:
        """True when the hub must refuse to run on generated development keys."""
        return self.environment == "production"

    def sqlite_path(self) -> Path | None:
        """The database file when the URL names a SQLite file, else ``None``."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix):])
        return None
