"""``hub reindex``: index rows rebuilt from stored resources, resuming where an interrupted run stopped."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, select

from hub.fhir.service import FhirService
from hub.store.database import Database
from hub.store.reindex import reindex
from hub.store.tables import INDEX_TABLES, reindex_job


def _store_patients(database: Database, count: int) -> None:
    with database.unit_of_work(write=True) as repository:
        service = FhirService(repository, search_parameters=database.search_parameters)
        for n in range(count):
            service.update("Patient", f"r{n}", {"resourceType": "Patient", "id": f"r{n}", "name": [{"family": "周"}]})


def _family_rows(database: Database) -> int:
    table = INDEX_TABLES["string"]
    with database.unit_of_work(write=False) as repository:
        query = select(func.count()).select_from(table).where(table.c.param == "family")
        return int(repository.connection.execute(query).scalar_one())


def _drop_index_rows(database: Database) -> None:
    with database.unit_of_work(write=True) as repository:
        for table in INDEX_TABLES.values():
            repository.connection.execute(delete(table))


class Interrupted(Exception):
    pass


def test_interrupted_reindex_resumes_and_rebuilds_every_row(database: Database) -> None:
    _store_patients(database, 5)
    assert _family_rows(database) == 5
    _drop_index_rows(database)

    def stop_after_first_batch(done: int) -> None:
        raise Interrupted(done)

    with pytest.raises(Interrupted):
        reindex(database, "Patient", batch_size=2, progress=stop_after_first_batch)
    assert _family_rows(database) == 2  # the first batch was committed with its position

    result = reindex(database, "Patient", batch_size=2)
    assert result.resumed and result.indexed == 3 and result.total_done == 5
    assert _family_rows(database) == 5
    with database.unit_of_work(write=False) as repository:
        job = repository.connection.execute(select(reindex_job)).one()
    assert job.finished is not None and job.done == 5

    again = reindex(database, "Patient", batch_size=2)  # a finished job starts over
    assert not again.resumed and again.indexed == 5 and _family_rows(database) == 5
