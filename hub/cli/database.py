"""The database every command opens (with the markers its writes must set: the 互认 HR tag), and how a command
reports a refusal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from hub.config import Settings
from hub.errors import HubError
from hub.recognition.service import install as install_recognition
from hub.store.database import Database


def open_database(settings: Settings | None = None) -> Database:
    """The hub's database for ``settings`` (default: the environment's), results marked HR as written."""
    database = Database(settings or Settings.from_env())
    install_recognition(database)
    return database


console = Console(soft_wrap=True)


def failed(action: str, error: HubError) -> typer.Exit:
    """Print ``error`` (every issue, no stack trace) and return the exit to raise."""
    console.print(f"[red]{action}:[/] {error.message}")
    if len(error.issues) > 1:
        for issue in error.issues:
            console.print(f"  - {issue.diagnostics}")
    return typer.Exit(1)


@contextmanager
def command_database(action: str) -> Iterator[Database]:
    """The hub's database for one command; a HubError is printed as ``action`` failing (exit 1)."""
    database = open_database()
    try:
        yield database
    except HubError as error:
        raise failed(action, error) from None
    finally:
        database.dispose()
