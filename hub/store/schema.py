"""Every table of the hub on one ``MetaData``: what the migrations and the schema tests compare."""

from __future__ import annotations

from hub.store import dashboard_tables as _dashboard_tables  # noqa: F401 (registers the dashboards' tables)
from hub.store import service_tables as _service_tables  # noqa: F401 (registers the services' tables)
from hub.store import tele_tables as _tele_tables  # noqa: F401 (registers tele-diagnosis's tables)
from hub.store.tables import metadata

__all__ = ["metadata"]
