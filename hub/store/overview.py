"""What the hub holds at a glance: resources, waiting quarantine, open conflicts, EMPI persons and reviews,
reading tasks (the demo's closing summary; no personal data, counts only)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, distinct, func, select

from hub.store.empi import EmpiStore
from hub.store.ingest_state import open_quarantine_counts
from hub.store.tables import empi_record, mapping_conflict, resource
from hub.store.tele_tables import tele_task


@dataclass
class Overview:
    """Counts of the hub's contents."""

    resources: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)
    empi_records: int = 0
    empi_persons: int = 0
    empi_reviews: int = 0
    tasks: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def linked_records(self) -> int:
        """Source Patients placed under a regional person that already had one (the links the EMPI made)."""
        return self.empi_records - self.empi_persons


def overview(connection: Connection) -> Overview:
    """Count what the database holds now."""
    out = Overview()
    rows = connection.execute(select(resource.c.resource_type, func.count()).where(resource.c.deleted.is_(False))
                              .group_by(resource.c.resource_type))
    out.resources = {kind: int(n) for kind, n in rows}
    out.quarantined = open_quarantine_counts(connection)
    rows = connection.execute(select(mapping_conflict.c.kind, func.count())
                              .where(mapping_conflict.c.status == "open").group_by(mapping_conflict.c.kind))
    out.conflicts = {kind: int(n) for kind, n in rows}
    out.empi_records, out.empi_persons = (int(n) for n in connection.execute(
        select(func.count(), func.count(distinct(empi_record.c.person_id)))).one())
    out.empi_reviews = EmpiStore(connection).reviews(status="open", limit=0)[1]
    rows = connection.execute(select(tele_task.c.center_id, tele_task.c.state, func.count())
                              .group_by(tele_task.c.center_id, tele_task.c.state))
    out.tasks = {(center, state): int(n) for center, state, n in rows}
    return out
