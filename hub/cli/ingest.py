"""``hub sources …`` (hospital IT registers source systems) and ``hub ingest …`` (runs, quarantine)."""

from __future__ import annotations

import json
import os
import signal
import threading
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.hl7v2.mllp import MllpServer
from hub.cli.database import open_database
from hub.cli.empi import describe, drain_queue
from hub.errors import HubError
from hub.fhir.instants import now_utc
from hub.ingest.mllp import MllpIngest
from hub.ingest.pipeline import IngestOptions, IngestRun, RunCounts
from hub.ingest.scheduler import IngestScheduler
from hub.registry.sources import (
    change_source,
    check_connection,
    get_source,
    open_adapter,
    register_source,
    source_summary,
)
from hub.store.database import Database

sources_app = typer.Typer(help="Source systems of member institutions (数据源登记).", no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest runs and quarantine (数据采集).", no_args_is_help=True)
console = Console(soft_wrap=True)


def _database() -> Database:
    return open_database()


def _fail(error: HubError) -> None:
    console.print(f"[red]{error.message}[/]")
    raise typer.Exit(1)


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"'{pair}' is not NAME=VALUE", param_hint="--option")
        options[name] = int(value) if value.isdigit() else value.split(",") if name == "kinds" else value
    return options


@sources_app.command("add")
def sources_add(
    source_id: str = typer.Option(..., "--id", help="Source id (lower-case letters, digits, '-')"),
    institution: str = typer.Option(..., help="Organization id of the institution running the system"),
    kind: str = typer.Option(..., "--kind", help="HIS, EMR, LIS, PACS, RIS, ECG or EHR"),
    adapter: str = typer.Option(..., help="Adapter: frontdb, his-pinyin, lis-english, sql-profile, hl7v2-drop"),
    connection_env: str = typer.Option(
        "HUB_SOURCE_CONNECTION", help="Environment variable holding the connection (keeps the password out of "
        "the shell history); --connection overrides it"),
    connection: str = typer.Option("", help="ODBC string/DSN, SQLAlchemy URL or directory"),
    name: str = typer.Option("", help="Display name"),
    schedule: str = typer.Option("", help="Cron expression, e.g. '*/15 * * * *'"),
    option: list[str] = typer.Option([], "--option", help="Adapter option NAME=VALUE (profile, page_size, kinds)"),
    disabled: bool = typer.Option(False, "--disabled", help="Register without scheduling it"),
) -> None:
    """Register a source system (its connection is stored encrypted)."""
    data = {"source_id": source_id, "institution": institution, "system_kind": kind, "adapter": adapter,
            "connection": connection or os.environ.get(connection_env, ""), "name": name or source_id,
            "schedule": schedule or None, "options": _options(option), "enabled": not disabled}
    try:
        source = register_source(_database(), data)
    except HubError as error:
        _fail(error)
    console.print(f"[green]Registered {source.source_id}[/] ({source.adapter} {source.adapter_version}); "
                  f"test it with: hub sources test {source.source_id}")


@sources_app.command("list")
def sources_list() -> None:
    """Registered sources (connections with passwords masked)."""
    database = _database()
    with database.sources(write=False) as store:
        sources = store.all()
    with database.ingest_state(write=False) as state:
        quarantined = state.open_counts()
    table = Table("id", "institution", "kind", "adapter", "schedule", "enabled", "quarantined", "connection")
    for source in sources:
        summary = source_summary(source)
        table.add_row(source.source_id, source.institution, source.system_kind,
                      f"{source.adapter} {source.adapter_version}", source.schedule or "-",
                      "yes" if source.enabled else "no", str(quarantined.get(source.source_id, 0)),
                      summary["connection"])
    console.print(table)


@sources_app.command("test")
def sources_test(source_id: str = typer.Argument(..., help="The source to test")) -> None:
    """Connect to the source and check the tables and columns its profile reads."""
    try:
        report = check_connection(get_source(_database(), source_id))
    except HubError as error:
        _fail(error)
    if report.ok:
        console.print(f"[green]OK[/] {report.message} ({report.seconds:.2f} s)")
        return
    console.print(f"[red]{report.reason}[/]: {report.message}")
    raise typer.Exit(2)


@sources_app.command("set")
def sources_set(
    source_id: str = typer.Argument(...),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    schedule: str | None = typer.Option(None, help="New cron expression ('' removes it)"),
    connection_env: str | None = typer.Option(None, help="Environment variable with the new connection"),
) -> None:
    """Enable, disable, reschedule or change the connection of a source."""
    data: dict[str, Any] = {}
    if enabled is not None:
        data["enabled"] = enabled
    if schedule is not None:
        data["schedule"] = schedule or ""
    if connection_env:
        data["connection"] = os.environ.get(connection_env, "")
    try:
        source = change_source(_database(), source_id, data)
    except HubError as error:
        _fail(error)
    console.print(json.dumps(source_summary(source), ensure_ascii=False, indent=1))


def _show_counts(counts: RunCounts) -> str:
    return ", ".join(f"{name.replace('records_', '')} {value}" for name, value in counts.as_dict().items())


@ingest_app.command("run")
def ingest_run(
    source_id: str = typer.Argument(..., help="The source to run now"),
    kind: list[str] = typer.Option([], "--kind", help="Only these record kinds"),
    page_size: int = typer.Option(1000, help="Rows per batch (one transaction each)"),
) -> None:
    """Run one source now, with a progress display; exit 1 if the run fails."""
    database = _database()
    try:
        source = get_source(database, source_id)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                      TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console,
                      transient=False) as progress:
            task = progress.add_task(source_id, total=None, counts="")

            def show(kind: str, counts: RunCounts) -> None:
                progress.update(task, description=f"{source_id} {kind}", counts=_show_counts(counts))

            result = IngestRun(database, source, open_adapter, options=IngestOptions(page_size=page_size),
                               progress=show).run("manual", kinds=kind or None)
    except HubError as error:
        _fail(error)
    rate = result.counts.records_read / result.seconds if result.seconds else 0.0
    colour = "green" if result.status == "succeeded" else "red"
    console.print(f"[{colour}]run {result.run_id} {result.status}[/] in {result.seconds:.1f} s "
                  f"({rate:.0f} records/s): {_show_counts(result.counts)}")
    if result.counts.created or result.counts.updated:
        console.print(f"Master patient index: {describe(drain_queue(database))}")
    if result.error:
        console.print(f"[red]{result.error}[/]")
        raise typer.Exit(1)


@ingest_app.command("runs")
def ingest_runs(source_id: str | None = typer.Argument(None), limit: int = typer.Option(20)) -> None:
    """Recent runs, newest first."""
    with _database().ingest_state(write=False) as state:
        runs = state.runs(source_id, limit)
    table = Table("run", "source", "trigger", "status", "started", "read", "created", "updated", "unchanged",
                  "quarantined", "error")
    for run in runs:
        table.add_row(str(run["run_id"]), run["source_id"], run["trigger"], run["status"],
                      str(run["started"])[:19], *(str(run[n]) for n in
                                                  ("records_read", "created", "updated", "unchanged", "quarantined")),
                      (run["error"] or "")[:80])
    console.print(table)


@ingest_app.command("quarantine")
def ingest_quarantine(source_id: str = typer.Argument(...), limit: int = typer.Option(50)) -> None:
    """Open quarantine entries of a source: key, kind and reason (raw rows are not printed)."""
    with _database().ingest_state(write=False) as state:
        entries = state.entries(source_id, limit=limit)
    table = Table("id", "run", "kind", "key", "reason")
    for entry in entries:
        table.add_row(str(entry["q_id"]), str(entry["run_id"]), entry["record_kind"], entry["source_key"],
                      entry["reason"])
    console.print(table)


@ingest_app.command("replay")
def ingest_replay(
    source_id: str = typer.Argument(...),
    entry: list[int] = typer.Option([], "--id", help="Only these quarantine entries (default: all open ones)"),
) -> None:
    """Convert a source's quarantined rows again, after the profile or the data was fixed."""
    database = _database()
    try:
        result = IngestRun(database, get_source(database, source_id), open_adapter).replay_open(entry)
    except HubError as error:
        _fail(error)
    console.print(f"replayed {result.counts.records_read} rows: {_show_counts(result.counts)}")


@ingest_app.command("discard")
def ingest_discard(entries: list[int] = typer.Argument(..., help="Quarantine entry ids")) -> None:
    """Drop quarantined rows on purpose (kept in the table as discarded, with the time)."""
    with _database().ingest_state(write=True) as state:
        discarded = state.discard(entries, now_utc())
    console.print(f"discarded {discarded} of {len(entries)} entries")


@ingest_app.command("reset")
def ingest_reset(
    source_id: str = typer.Argument(...),
    kind: list[str] = typer.Option([], "--kind", help="Only these record kinds"),
) -> None:
    """Forget a source's watermarks: its next run reads everything again (unchanged rows make no version)."""
    database = _database()
    try:
        get_source(database, source_id)
    except HubError as error:
        _fail(error)
    with database.ingest_state(write=True) as state:
        reset = state.reset_positions(source_id, kind or None)
    console.print(f"reset {reset} watermarks of {source_id}")


@sources_app.command("remove")
def sources_remove(source_id: str = typer.Argument(...)) -> None:
    """Unregister a source (the data it brought in, its runs and its quarantine stay)."""
    with _database().sources(write=True) as store:
        removed = store.remove(source_id)
    if not removed:
        console.print(f"[red]No source {source_id}[/]")
        raise typer.Exit(1)
    console.print(f"removed {source_id}")


@ingest_app.command("scheduler")
def ingest_scheduler() -> None:
    """Run enabled sources on their cron schedules until stopped (Ctrl-C or SIGTERM)."""
    database = _database()
    scheduler = IngestScheduler(database, open_adapter)
    scheduler.start()
    console.print(f"scheduling: {scheduler.sync() or 'no source has a schedule yet'}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    scheduler.stop()


@ingest_app.command("listen")
def ingest_listen(
    source_id: str = typer.Argument(..., help="A source with the hl7v2-drop adapter (its messages' institution)"),
    host: str = typer.Option("0.0.0.0", help="Address to listen on"),
    port: int = typer.Option(2575, help="MLLP port"),
) -> None:
    """Receive HL7 v2 ORU^R01 lab results over MLLP; each is ACKed after it is stored."""
    database = _database()
    try:
        handler = MllpIngest(database, get_source(database, source_id), open_adapter)
    except HubError as error:
        _fail(error)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with MllpServer(host, port, handler.handle) as server:
        console.print(f"listening for MLLP on {host}:{server.port} (run {handler.run_id})")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    handler.close()
