"""Rebuild search-index rows of stored resources (``hub reindex``), resumably.

Needed after a custom ``SearchParameter`` is added or changed, and after an upgrade
that indexes more. Resources are processed in key order, one batch per transaction;
the job's position is saved in the same transaction as the rows it covers, so an
interrupted run resumes where it stopped and never leaves a resource half-indexed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update

from hub.fhir import jsonio
from hub.fhir.instants import now_utc
from hub.store.database import Database
from hub.store.tables import reindex_job, resource

BATCH_SIZE = 500


@dataclass(frozen=True)
class ReindexResult:
    """What a run did: resources reindexed by this run, in the whole job, and whether it resumed."""

    indexed: int
    total_done: int
    resumed: bool


def job_name(resource_type: str | None) -> str:
    """The job key of a reindex of ``resource_type`` (or of everything)."""
    return f"reindex:{resource_type or '*'}"


def count_current(database: Database, resource_type: str | None) -> int:
    """How many current resources a reindex of ``resource_type`` covers."""
    with database.unit_of_work(write=False) as repository:
        query = select(func.count()).select_from(resource).where(resource.c.deleted.is_(False))
        if resource_type is not None:
            query = query.where(resource.c.resource_type == resource_type)
        return int(repository.connection.execute(query).scalar_one())


def reindex(
    database: Database,
    resource_type: str | None,
    *,
    restart: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> ReindexResult:
    """Re-extract the index rows of every current resource (of ``resource_type``).

    An unfinished job for the same type resumes unless ``restart``; ``progress`` is called
    with the number of resources done after each batch.
    """
    name = job_name(resource_type)
    with database.unit_of_work(write=True) as repository:
        connection = repository.connection
        job = connection.execute(select(reindex_job).where(reindex_job.c.job == name)).first()
        resumed = job is not None and job.finished is None and not restart
        if job is None:
            connection.execute(insert(reindex_job).values(job=name, last_pk=0, done=0, started=now_utc()))
        elif not resumed:
            connection.execute(update(reindex_job).where(reindex_job.c.job == name)
                               .values(last_pk=0, done=0, started=now_utc(), finished=None))
        after, done = (job.last_pk, job.done) if resumed and job is not None else (0, 0)
    indexed = 0
    while True:
        with database.fhir_service(write=True) as service:
            repository = service.repository
            batch = repository.current_batch(resource_type, after, batch_size)
            if batch:
                items = [(s, service.index_values(jsonio.loads_stored(s.content or b"{}"), s.content)) for s in batch]
                repository.replace_index(items)
                after, done, indexed = batch[-1].pk, done + len(batch), indexed + len(batch)
            values = {"last_pk": after, "done": done}
            if len(batch) < batch_size:
                values["finished"] = now_utc()
            repository.connection.execute(update(reindex_job).where(reindex_job.c.job == name).values(**values))
        if progress is not None:
            progress(done)
        if len(batch) < batch_size:
            database.refresh_statistics(force=True)
            return ReindexResult(indexed, done, resumed)

