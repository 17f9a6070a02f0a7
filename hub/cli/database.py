"""The database every command opens: with the markers its writes must set (the 互认 HR tag)."""

from __future__ import annotations

from hub.config import Settings
from hub.recognition.service import install as install_recognition
from hub.store.database import Database


def open_database(settings: Settings | None = None) -> Database:
    """The hub's database for ``settings`` (default: the environment's), results marked HR as written."""
    database = Database(settings or Settings.from_env())
    install_recognition(database)
    return database
