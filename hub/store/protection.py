"""Key rotation for personal data at rest: re-encrypt stored values (resources, source connections,
quarantined rows) under the active key."""

from __future__ import annotations

from sqlalchemy import select, update

from hub.store.database import Database
from hub.store.ingest_state import QUARANTINE_CONTEXT
from hub.store.tables import quarantine, resource, resource_version

_BATCH = 500


def reencrypt(database: Database) -> int:
    """Re-encrypt every stored version holding a value under an old key; how many changed.

    Runs in batches (one transaction each) and can be repeated or resumed safely: a value
    already under the active key is left alone.
    """
    protector = database.protector
    changed = 0
    for table, key_columns in ((resource, (resource.c.res_pk,)),
                               (resource_version, (resource_version.c.res_pk, resource_version.c.version_id))):
        after: tuple = (0,) * len(key_columns)
        while True:
            with database.connection(write=True) as connection:
                query = (select(*key_columns, table.c.content)
                         .where(table.c.content.like("%hub:enc:%"))
                         .order_by(*key_columns).limit(_BATCH))
                if len(key_columns) == 1:
                    query = query.where(key_columns[0] > after[0])
                else:
                    query = query.where((key_columns[0] > after[0])
                                        | ((key_columns[0] == after[0]) & (key_columns[1] > after[1])))
                rows = connection.execute(query).all()
                for row in rows:
                    rewritten = protector.reencrypt_bytes(row.content.encode())
                    if rewritten is not None:
                        keys = [column == value for column, value in zip(key_columns, row[:-1], strict=True)]
                        connection.execute(update(table).where(*keys).values(content=rewritten.decode()))
                        changed += 1
            if len(rows) < _BATCH:
                break
            after = tuple(rows[-1][:-1])
    return changed


def reencrypt_secrets(database: Database) -> int:
    """Re-encrypt source connections and quarantined raw rows under the active key; how many changed."""
    keyring = database.protector.keyring
    changed = 0
    with database.sources(write=True) as store:
        for source in store.all():
            store.save(source)  # saving seals under the active key
            changed += 1
    with database.connection(write=True) as connection:
        rows = connection.execute(select(quarantine.c.q_id, quarantine.c.raw)).all()
        for row in rows:
            if keyring.key_id_of(row.raw) == keyring.active:
                continue
            sealed = keyring.encrypt(keyring.decrypt(row.raw, QUARANTINE_CONTEXT), QUARANTINE_CONTEXT)
            connection.execute(update(quarantine).where(quarantine.c.q_id == row.q_id).values(raw=sealed))
            changed += 1
    return changed
