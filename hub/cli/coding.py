"""``hub terminology`` and ``hub mappings``: load the shipped terminology, load/export mapping tables, see conflicts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.cli.database import command_database
from hub.coding.catalog import DEFAULT_DIR, catalog_resources
from hub.coding.mapping_tables import decode_table, read_csv, write_csv
from hub.coding.terminology import PROCESS_CACHE
from hub.governance.tables import export_table, load_table, renormalize_scope
from hub.store.conflicts import ConflictFilter
from hub.store.database import Database

#: The mapping tables shipped with the hub (the repository's ``mappings/``).
MAPPINGS_DIR = DEFAULT_DIR.parent / "mappings"
terminology_app = typer.Typer(help="Code systems, value sets and concept maps (术语).", no_args_is_help=True)
mappings_app = typer.Typer(help="Local-code mapping tables and their conflicts (映射表).", no_args_is_help=True)
console = Console(soft_wrap=True)


def load_terminology(database: Database, directory: Path = DEFAULT_DIR) -> dict[str, int]:
    """Store every catalog resource (unchanged ones keep their version); counts by outcome."""
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    with database.fhir_service(write=True) as service:
        for item in catalog_resources(directory):
            outcome = service.update(item.resource_type, item.resource_id, item.resource)
            key = "created" if outcome.status == 201 else ("unchanged" if outcome.message else "updated")
            counts[key] += 1
    return counts


def load_mapping_dir(database: Database, directory: Path = MAPPINGS_DIR, actor: str = "demo") -> dict[str, int]:
    """Load every ``<scope>.csv`` of a directory; the version of each scope's table."""
    versions = {}
    for path in sorted(directory.glob("*.csv")):
        rows = read_csv(decode_table(path.read_bytes()), path.stem)
        versions[path.stem] = load_table(database, PROCESS_CACHE, path.stem, rows, actor=actor).version
    return versions


@terminology_app.command("load")
def terminology_load(
    directory: Path = typer.Option(DEFAULT_DIR, "--dir", exists=True, file_okay=False,
                                   help="A terminology directory (catalog.yaml + data/*.csv)"),
) -> None:
    """Store the code systems, value sets and concept maps of the catalog (again: nothing changes)."""
    with command_database("Terminology not loaded") as database:
        counts = load_terminology(database, directory)
    console.print(f"Terminology loaded from {directory}: {counts}")


@mappings_app.command("load")
def mappings_load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="A mapping CSV"),
    scope: str = typer.Option("", help="Source id or adapter name the table is for (default: the file name)"),
    actor: str = typer.Option("cli", help="Who loads it (recorded on the re-normalized resources)"),
) -> None:
    """Load a mapping table as the scope's next ConceptMap version; stored data carrying a changed code follows."""
    scope = scope or path.stem
    with command_database(f"{path.name} not loaded") as database:
        rows = read_csv(decode_table(path.read_bytes()), scope)
        change = load_table(database, PROCESS_CACHE, scope, rows, actor=actor)
    summary = change.as_dict()
    console.print(f"Mapping table {scope}: version {summary['version']}, {len(rows)} rows, "
                  f"{summary['changed_codes']} codes changed")
    if summary["renormalized"]:
        console.print(f"Re-normalized stored resources: {summary['renormalized']}")
    console.print(f"Table conflicts: {summary['conflicts']}")


@mappings_app.command("export")
def mappings_export(
    scope: str = typer.Argument(..., help="Source id or adapter name"),
    output: Path = typer.Option(None, "-o", "--output", help="File to write (default: print)"),
) -> None:
    """Write a scope's current table as CSV (decisions made in the review included)."""
    with command_database("Not exported") as database:
        text = write_csv(export_table(database, PROCESS_CACHE, scope), scope)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"Wrote {output}")


@mappings_app.command("renormalize")
def mappings_renormalize(
    scope: str = typer.Argument(..., help="Source id or adapter name"),
    actor: str = typer.Option("cli", help="Who runs it (recorded in the Provenance)"),
) -> None:
    """Normalize again the stored resources carrying any code of a scope's table (after a terminology change,
    or to finish a background re-normalization that was interrupted)."""
    with command_database("Not re-normalized") as database:
        done = renormalize_scope(database, PROCESS_CACHE, scope, actor=actor)
    console.print(f"Re-normalized under {scope}'s table: {done.as_dict()}")


@mappings_app.command("conflicts")
def mappings_conflicts(
    status: str = typer.Option("open", help="open, approved, rejected, not-applicable, resolved (comma-separated)"),
    kind: str = typer.Option("", help="unmapped, ambiguous, inconsistent, invalid-target, unit, display-drift"),
    source: str = typer.Option("", help="Only conflicts of this source"),
    limit: int = typer.Option(50, help="How many"),
) -> None:
    """The mapping conflicts, most frequent first (review them at /governance/)."""
    with command_database("Cannot list") as database, database.conflicts(write=False) as store:
        rows, total = store.list(ConflictFilter(kind=kind or None, status=status or None, source=source or None),
                                 limit=limit)
    table = Table("id", "kind", "code", "display", "occurrences", "sources", "status")
    for row in rows:
        table.add_row(str(row["id"]), row["kind"], row["code"], row["display"], str(row["occurrences"]),
                      ", ".join(row["sources"]), row["status"])
    console.print(table)
    console.print(f"{total} conflicts")
