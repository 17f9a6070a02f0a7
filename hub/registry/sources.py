"""Source systems as hospital IT registers them: validation, adapters, connection tests.

Adapters are plugins (entry-point group ``hub.adapters``); a source names one and gives
its connection. The connection is a secret (it carries the password): it is stored
encrypted, shown only with its password masked, and never written to logs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from adapters.base import SYSTEM_KINDS, Adapter, AdapterError, ConnectionProblem, SourceConfig
from adapters.sql.connection import mask_secrets
from hub.errors import Conflict, InvalidRequest, NotFound
from hub.fhir.instants import now_utc
from hub.privacy import clip, mask_text
from hub.store.database import Database
from hub.store.sources import SourceRecord

ADAPTER_GROUP = "hub.adapters"
_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9\-]{1,63}$")
_OPTION_KEYS = frozenset({"profile", "page_size", "kinds", "timeout_seconds", "settle_seconds", "timezone"})


@cache
def available_adapters() -> dict[str, EntryPoint]:
    """The installed adapters by name."""
    return {ep.name: ep for ep in entry_points(group=ADAPTER_GROUP)}


def open_adapter(source: SourceRecord) -> Adapter:
    """An adapter object for a registered source (not yet connected)."""
    entry = available_adapters().get(source.adapter)
    if entry is None:
        raise ConnectionProblem("configuration", f"the adapter '{source.adapter}' is not installed on this hub")
    factory = entry.load()
    try:
        return factory(SourceConfig(source.source_id, source.institution, source.connection, dict(source.options)))
    except ConnectionProblem:
        raise
    except (AdapterError, ValueError) as exc:  # a broken profile file
        raise ConnectionProblem("configuration", clip(mask_secrets(str(exc)), 300)) from None


def adapter_version(name: str, options: Mapping[str, Any]) -> str:
    """The version of an adapter (its profile's) as it would run a source with ``options``."""
    probe = SourceRecord("probe", "probe", "probe", "HIS", name, "", "", dict(options))
    adapter = open_adapter(probe)
    try:
        return str(adapter.version)
    finally:
        adapter.close()


def check_schedule(expression: str, timezone: str) -> None:
    """Raise InvalidRequest unless ``expression`` is a five-field cron expression."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as exc:
        raise InvalidRequest(f"schedule: '{clip(expression, 60)}' is not a cron expression "
                             f"(minute hour day month weekday): {clip(exc, 120)}", expression="schedule") from None


def source_from_request(
    data: Mapping[str, Any], *, existing: SourceRecord | None = None, timezone: str = "Asia/Shanghai"
) -> SourceRecord:
    """A validated source from API or CLI input; for an update, unspecified fields keep ``existing``'s values
    (so the connection need not be sent again)."""
    def pick(name: str, default: Any = None) -> Any:
        if name in data and data[name] is not None:
            return data[name]
        return getattr(existing, name) if existing is not None else default

    source_id = str(pick("source_id", "")).strip()
    if not _SOURCE_ID.match(source_id):
        raise InvalidRequest("source_id: 2-64 lower-case letters, digits and '-'", expression="source_id")
    institution = str(pick("institution", "")).strip()
    if not institution:
        raise InvalidRequest("institution: the Organization id of the institution that runs the system",
                             expression="institution")
    kind = str(pick("system_kind", "")).upper()
    if kind not in SYSTEM_KINDS:
        raise InvalidRequest(f"system_kind: one of {', '.join(SYSTEM_KINDS)}", expression="system_kind")
    adapter = str(pick("adapter", ""))
    if adapter not in available_adapters():
        raise InvalidRequest(f"adapter: '{clip(adapter, 64)}' is not installed (installed: "
                             f"{', '.join(sorted(available_adapters()))})", expression="adapter")
    connection = str(pick("connection", "")).strip()
    if not connection:
        raise InvalidRequest("connection: an ODBC connection string or DSN, a SQLAlchemy URL, a directory "
                             "or an MLLP address", expression="connection")
    options = pick("options", {})
    if not isinstance(options, Mapping) or set(options) - _OPTION_KEYS:
        raise InvalidRequest(f"options: a JSON object with keys among {', '.join(sorted(_OPTION_KEYS))}",
                             expression="options")
    schedule = pick("schedule")
    if schedule is not None and str(schedule).strip():
        schedule = str(schedule).strip()
        check_schedule(schedule, timezone)
    else:
        schedule = None
    try:
        version = adapter_version(adapter, options)
    except ConnectionProblem as problem:
        raise InvalidRequest(f"adapter: {problem.message}", expression="adapter") from None
    registered = str(pick("adapter_version", "") or version)
    now = now_utc()
    return SourceRecord(
        source_id, institution, str(pick("name", source_id))[:200], kind, adapter, registered[:32], connection,
        dict(options), schedule, bool(pick("enabled", True)), existing.created if existing else now, now,
    )


def source_summary(source: SourceRecord) -> dict[str, Any]:
    """What the API and CLI show of a source: everything but the secret (the password masked)."""
    return {
        "source_id": source.source_id, "institution": source.institution, "name": source.name,
        "system_kind": source.system_kind, "adapter": source.adapter, "adapter_version": source.adapter_version,
        "connection": mask_secrets(source.connection), "options": dict(source.options),
        "schedule": source.schedule, "enabled": source.enabled,
        "created": _iso(source.created), "updated": _iso(source.updated),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class ConnectionReport:
    """The result of ``$test-connection``: ok, or the reason and a secret-free message."""

    ok: bool
    reason: str
    message: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"ok": self.ok, "reason": self.reason, "message": self.message, "seconds": round(self.seconds, 3)}


def check_connection(source: SourceRecord) -> ConnectionReport:
    """Connect to the source and check every table and column its profile reads."""
    started = time.monotonic()
    adapter = None
    try:
        adapter = open_adapter(source)
        adapter.check()
        return ConnectionReport(True, "ok", "connected; every table and column the profile reads is there",
                                time.monotonic() - started)
    except ConnectionProblem as problem:
        message = clip(mask_text(mask_secrets(problem.message)), 500)
        return ConnectionReport(False, problem.reason, message, time.monotonic() - started)
    finally:
        if adapter is not None:
            adapter.close()



def _require_institution(database: Database, institution: str) -> None:
    with database.unit_of_work(write=False) as repository:
        found = repository.read_current("Organization", institution)
    if found is None or found.deleted:
        raise InvalidRequest(f"institution: no Organization/{clip(institution, 64)} (load the roster first: "
                             "hub registry load)", expression="institution")


def register_source(database: Database, data: Mapping[str, Any]) -> SourceRecord:
    """Validate and register a new source; Conflict if the id is taken."""
    source = source_from_request(data, timezone=database.settings.timezone)
    _require_institution(database, source.institution)
    with database.sources(write=True) as store:
        if store.get(source.source_id) is not None:
            raise Conflict(f"A source {source.source_id} is already registered")
        store.add(source)
    return source


def change_source(database: Database, source_id: str, data: Mapping[str, Any]) -> SourceRecord:
    """Change a registered source (fields not given keep their values); NotFound if unknown."""
    with database.sources(write=False) as store:
        existing = store.get(source_id)
    if existing is None:
        raise NotFound(f"No source {clip(source_id, 64)}")
    source = source_from_request({**data, "source_id": source_id}, existing=existing,
                                 timezone=database.settings.timezone)
    if source.institution != existing.institution:
        _require_institution(database, source.institution)
    with database.sources(write=True) as store:
        store.save(source)
    return source


def get_source(database: Database, source_id: str) -> SourceRecord:
    """A registered source; NotFound if unknown."""
    with database.sources(write=False) as store:
        source = store.get(source_id)
    if source is None:
        raise NotFound(f"No source {clip(source_id, 64)}")
    return source
