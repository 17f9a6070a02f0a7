"""``hub empi``: run the master patient index over the queued Patient writes, show its state, check rules."""

from __future__ import annotations

import typer
from rich.console import Console

from hub.cli.database import failed, open_database
from hub.config import Settings
from hub.empi.engine import Engine, RunStats
from hub.empi.rules import load_rules
from hub.errors import HubError
from hub.store.database import Database

empi_app = typer.Typer(help="Master patient index (唯一主索引).", no_args_is_help=True)
console = Console(soft_wrap=True)


def drain_queue(database: Database) -> RunStats:
    """Place every queued Patient write (the API's worker does this in the background)."""
    return Engine(database).run(batch=500)


def describe(stats: RunStats) -> str:
    """One line of what a run did."""
    return (f"{stats.processed} Patient writes placed: {stats.new_persons} new persons, {stats.auto_links} "
            f"automatic links, {stats.reviews} review items, {stats.unchanged} unchanged, {stats.removed} removed")


@empi_app.command("run")
def empi_run() -> None:
    """Place every queued Patient write now (link, queue for review, or start a new person)."""
    database = open_database()
    try:
        console.print(describe(drain_queue(database)))
    except HubError as error:
        raise failed("EMPI run failed", error) from None
    finally:
        database.dispose()


@empi_app.command("status")
def empi_status() -> None:
    """Queued Patient writes and open review items."""
    database = open_database()
    try:
        with database.empi(write=False) as store:
            _items, reviews = store.reviews(status="open", limit=1)
            console.print(f"queue: {store.queue_length()} Patient writes; open review items: {reviews}")
    finally:
        database.dispose()


@empi_app.command("check-rules")
def check_rules(path: str = typer.Argument("", help="A rules YAML file (default: HUB_EMPI_RULES_FILE or the hub's)"),
                region: str = typer.Option("", help="Apply this region's overrides")) -> None:
    """Load matching rules and print the weights and thresholds they give (exit 1 when they are invalid)."""
    settings = Settings.from_env()
    try:
        rules = load_rules(path or settings.empi_rules_file, region or settings.empi_region)
    except HubError as error:
        raise failed("Invalid EMPI rules", error) from None
    console.print(f"auto-link >= {rules.auto_link}, review >= {rules.review}, max block size {rules.max_block_size}")
    for field, levels in rules.weights.items():
        console.print(f"  {field}: " + ", ".join(f"{level} {weight:+.2f}" for level, weight in levels.items()))
