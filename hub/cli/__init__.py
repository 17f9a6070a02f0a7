"""The ``hub`` command: serve, migrate, load, demo, export the OpenAPI spec."""

from __future__ import annotations

import getpass
import json
import logging.config
import os
import time
from importlib import resources as importlib_resources
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from hub.api.audit import audit_row
from hub.auth.audit import AuditRecord
from hub.cli.coding import load_mapping_dir, load_terminology, mappings_app, terminology_app
from hub.cli.dashboards import dashboards_app
from hub.cli.database import open_database
from hub.cli.demo_consortium import ingest_all, prepare, recognition_example
from hub.cli.demo_guide import demo_clients, print_guide, print_summary
from hub.cli.demo_source import DEMO_INSTITUTION
from hub.cli.empi import describe, drain_queue, empi_app
from hub.cli.ingest import ingest_app, sources_app
from hub.cli.recognition import load_recognition_samples, recognition_app
from hub.cli.registry import registry_app
from hub.cli.security import audit_app, clients_app, keys_app
from hub.cli.telediagnosis import demo_exams, drain_intake, load_tele_samples, tele_app
from hub.config import Settings
from hub.dashboards.definitions import measures
from hub.dashboards.service import Dashboards
from hub.errors import HubError
from hub.fhir import jsonio
from hub.fhir.bulk import consortium_group
from hub.fhir.resource_types import resource_types
from hub.fhir.search_values import local_zone
from hub.fhir.transaction import process_bundle
from hub.privacy import logging_config
from hub.privacy.keyring import KeyringError
from hub.registry.roster import apply_roster, load_roster
from hub.store.database import Database, create_hub_engine
from hub.store.migrate import current_revision, head_revision, upgrade
from hub.store.reindex import count_current, reindex
from hub.telediagnosis.service import Telediagnosis

#: The demo's Group of every patient of the 昆山 consortium (a group-level $export).
DEMO_GROUP = "group-consortium-ks"
app = typer.Typer(help="Regional health-data hub (区域医疗健康数据中心).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
openapi_app = typer.Typer(help="OpenAPI specification.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(openapi_app, name="openapi")
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(registry_app, name="registry")
app.add_typer(sources_app, name="sources")
app.add_typer(ingest_app, name="ingest")
app.add_typer(terminology_app, name="terminology")
app.add_typer(mappings_app, name="mappings")
app.add_typer(empi_app, name="empi")
app.add_typer(recognition_app, name="recognition")
app.add_typer(tele_app, name="telediagnosis")
app.add_typer(dashboards_app, name="dashboards")
console = Console(soft_wrap=True)
#: Failures go to standard error (a script may be reading standard output).
errors = Console(soft_wrap=True, stderr=True)


def _database() -> Database:
    return open_database()


def _describe(settings: Settings) -> str:
    path = settings.sqlite_path()
    if path is not None:
        return f"SQLite file {path}"
    url = settings.database_url
    return url.split("@", 1)[-1] if "@" in url else url


def _schema_engine(wait: int = 0) -> tuple[Engine, Settings]:
    """The engine of HUB_DATABASE_URL for schema work (no keys needed), once the database answers
    (waiting up to ``wait`` seconds); exit 1 naming the database (never its password) when it does not."""
    settings = Settings.from_env()
    engine = create_hub_engine(settings)
    deadline = time.monotonic() + wait
    while True:
        try:
            with engine.connect():
                return engine, settings
        except OperationalError as exc:
            if time.monotonic() >= deadline:
                reason = type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
                errors.print(f"[red]The database does not answer[/] ({_describe(settings)}: {reason}"
                             f"{f', waited {wait} s' if wait else ''})")
                raise typer.Exit(1) from None
            time.sleep(1)


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument("head", help="Target revision"),
    wait: int = typer.Option(0, "--wait", min=0, help="Seconds to wait for the database to accept connections"),
) -> None:
    """Create or migrate the database schema (HUB_DATABASE_URL; default ./var/hub.db)."""
    engine, settings = _schema_engine(wait)
    upgrade(engine, revision)
    console.print(f"[green]Database at {current_revision(engine)}[/] ({_describe(settings)})")


@db_app.command("current")
def db_current(
    wait: int = typer.Option(0, "--wait", min=0, help="Seconds to wait for the database to accept connections"),
) -> None:
    """Show the schema revision of the database (None: never migrated) and of the code."""
    engine, _settings = _schema_engine(wait)
    console.print(f"database: {current_revision(engine)}  code: {head_revision()}")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container's arbitrary uid)
        return str(os.getuid())


def load_bundle(database: Database, raw: bytes) -> dict:
    """Run a transaction/batch Bundle in-process and return the response Bundle.

    Audited like an HTTP transaction, under the operator's login (``cli:<user>``).
    """
    record = AuditRecord("POST", "/fhir", "", "local", client_id=f"cli:{_operator()}"[:64])
    record.add_patients_from(raw)
    try:
        with database.fhir_service(write=True) as service:
            result = process_bundle(service, jsonio.loads(raw), "", "minimal")
        record.status = 200
        return result
    except HubError as error:
        record.status = error.status
        raise
    finally:
        record.status = record.status or 500
        database.audit.record(audit_row(record))
        database.audit.flush()


@app.command("load")
def load(path: Path = typer.Argument(..., exists=True, readable=True, help="A transaction or batch Bundle (JSON)")) -> None:
    """Load a transaction or batch Bundle file into the store."""
    database = _database()
    try:
        result = load_bundle(database, path.read_bytes())
    except HubError as error:
        console.print(f"[red]Not loaded:[/] {error.message}")
        raise typer.Exit(1) from None
    _summarize(result)


def _summarize(result: dict) -> None:
    counts: dict[str, int] = {}
    for entry in result.get("entry", []):
        status = entry["response"]["status"]
        counts[status] = counts.get(status, 0) + 1
    table = Table("status", "entries")
    for status, n in sorted(counts.items()):
        table.add_row(status, str(n))
    console.print(table)


@app.command("reindex")
def reindex_command(
    resource_type: str = typer.Option(None, "--type", help="Only this resource type (default: every type)"),
    restart: bool = typer.Option(False, "--restart", help="Start over instead of resuming an unfinished run"),
) -> None:
    """Rebuild search-index rows (after adding a SearchParameter); resumes an interrupted run."""
    database = _database()
    if resource_type is not None and resource_type not in resource_types():
        console.print(f"[red]Unknown resource type[/] {resource_type}")
        raise typer.Exit(2)
    total = count_current(database, resource_type)
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as bar:
        task = bar.add_task(f"reindex {resource_type or 'all types'}", total=total)
        result = reindex(database, resource_type, restart=restart, progress=lambda done: bar.update(task, completed=done))
    resumed = " (resumed)" if result.resumed else ""
    console.print(f"[green]Reindexed {result.total_done} resources[/]{resumed}: {result.indexed} in this run")


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8080, help="TCP port"),
    workers: int = typer.Option(1, help="Worker processes"),
) -> None:
    """Serve the hub (FHIR API at /fhir) with uvicorn."""
    import uvicorn

    uvicorn.run("hub.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_config=logging_config(), access_log=False)


@app.command("demo")
def demo(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
    port: int = typer.Option(8080, help="TCP port"),
    no_serve: bool = typer.Option(False, "--no-serve", help="Set up and load, but do not serve"),
    seed: int = typer.Option(7, "--seed", min=0, help="Seed of the synthetic consortium (the same seed and day, "
                             "the same data)"),
    patients: int = typer.Option(5000, "--patients", min=50, max=200_000, help="Residents to generate"),
) -> None:
    """Build a synthetic 昆山 consortium (source systems in four vendor styles), ingest it, and serve the hub."""
    started = time.monotonic()
    database = _database()
    upgrade(database.engine)
    console.print(f"[green]Database ready[/] ({_describe(database.settings)})")
    samples = importlib_resources.files("hub") / "samples"
    roster_path = Path(str(samples / "kunshan-roster.yaml"))
    with database.fhir_service(write=True) as service:
        roster = apply_roster(service, load_roster(roster_path))
    console.print(f"Roster of the 昆山 consortium: {roster}")
    with database.fhir_service(write=True) as service:
        service.update("Group", DEMO_GROUP, consortium_group(DEMO_GROUP, "consortium-ks", "昆山医共体全部居民"))
    _summarize(load_bundle(database, (samples / "demo-bundle.json").read_bytes()))
    console.print(f"Terminology (GB/T, WS 364, ICD-10 国家临床版, LOINC, UCUM): {load_terminology(database)}")
    tables = {**load_mapping_dir(database), **load_mapping_dir(database, Path(str(samples / "demo-mappings")))}
    console.print(f"Mapping tables (versions): {tables}")
    console.print(f"Recognition (互认): {load_recognition_samples(database, samples)}")
    console.print(f"Tele-diagnosis (远程诊断): {load_tele_samples(database, samples)}")
    directory, drop = Path("var/demo"), Path("var/drop")
    try:
        manifest = prepare(database, directory, drop, roster_path, seed, patients, _describe(database.settings),
                           console)
        runs = ingest_all(database, manifest, console)
    except HubError as error:
        errors.print(f"[red]Demo not loaded:[/] {error.message}")
        raise typer.Exit(2) from None
    console.print(f"Master patient index: {describe(drain_queue(database))}")
    intake = drain_intake(Telediagnosis(database))
    console.print(f"Exams routed to the reading centers: {intake['created']} reading tasks created")
    for task in demo_exams(database, DEMO_INSTITUTION, f"urn:hub:mrn:{DEMO_INSTITUTION}|Y0005"):
        reader = f" to PractitionerRole/{task['reader']}" if task["reader"] else ""
        console.print(f"  exam {task['focus']} ({task['modality']}, {task['priority']}) of {DEMO_INSTITUTION} → "
                      f"center {task['center_id']}, {task['state']}{reader}, due "
                      f"{task['deadline'].astimezone(local_zone()):%Y-%m-%d %H:%M}")
    dashboards = Dashboards(database)
    dashboards.install_measures()
    console.print(f"Dashboards (一屏看全区): {len(measures())} indicators as FHIR Measures; facts "
                  f"{dashboards.refresh().as_dict()}")
    example = recognition_example(manifest)
    clients = demo_clients(database, directory, console, example["site"] if example else DEMO_INSTITUTION)
    print_summary(database, runs, console)
    database.dispose()
    failed = [run for run in runs if run.status != "succeeded"]
    if failed:
        for run in failed:
            errors.print(f"[red]Source {run.source_id} was not ingested:[/] {run.error}")
        errors.print("[red]Demo not ready[/]: see the sources above (hub sources test <source>)")
        raise typer.Exit(1)
    print_guide(f"http://{host}:{port}", clients, manifest, directory, console)
    console.print(f"[green]Demo ready in {time.monotonic() - started:.0f} s[/]")
    if not no_serve:
        serve(host=host, port=port, workers=1)


@openapi_app.command("export")
def openapi_export(
    output: Path = typer.Option(Path("openapi/openapi.json"), help="Where to write the spec"),
) -> None:
    """Write the OpenAPI spec of the app (kept equal to the app by a test)."""
    from hub.api.app import create_app

    spec = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(spec, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    console.print(f"wrote {output}")


def main() -> None:
    """Entry point of the ``hub`` console script (every log line masked; a refusal or an unusable keyring is
    one line on standard error and exit 1, never a stack trace)."""
    logging.config.dictConfig(logging_config())
    try:
        app()
    except HubError as error:
        errors.print(f"[red]{error.message}[/]")
        raise SystemExit(1) from None
    except KeyringError as error:
        errors.print(f"[red]{error}[/]: the hub's data keys are HUB_DATA_KEYS_FILE, or in development the keyring "
                     "under ./var/keys of the directory the hub was set up in (run hub there)")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
