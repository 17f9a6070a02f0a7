"""``hub registry``: load the consortium roster (institutions as Organizations) and list it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hub.cli.database import failed, open_database
from hub.errors import HubError
from hub.fhir import jsonio
from hub.recognition.service import install as install_recognition
from hub.registry.roster import LEVELS, ROLES, apply_roster, load_roster
from hub.store.database import Database
from hub.store.organizations import summary

registry_app = typer.Typer(help="Institutions of the consortium (机构注册).", no_args_is_help=True)
console = Console(soft_wrap=True)
_BATCH = 500


def _stored_ids(database: Database) -> set[str]:
    """The ids of every current Organization in the store."""
    return {summary(o)["id"] for o in _organizations(database)}


def _organizations(database: Database) -> list[dict]:
    """Every current Organization (JSON), in storage order."""
    found: list[dict] = []
    after = 0
    with database.unit_of_work(write=False) as repository:
        while True:
            batch = repository.current_batch("Organization", after, _BATCH)
            found += [jsonio.loads_stored(stored.content) for stored in batch if stored.content is not None]
            if len(batch) < _BATCH:
                return found
            after = batch[-1].pk


@registry_app.command("load")
def registry_load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                help="A roster file: .yaml/.yml or .csv (id,name,parent,kind,role,level,uscc,license,alias)"),
) -> None:
    """Load a roster into the store (PUT each Organization, parents first; unchanged ones keep their version)."""
    database = open_database()
    try:
        organizations = load_roster(path, known_ids=_stored_ids(database))
        with database.fhir_service(write=True) as service:
            counts = apply_roster(service, organizations)
        # results qualified by hospital level (互认) follow the institutions' levels and departments
        remarked = install_recognition(database).remark(level_rules_only=True) if counts["updated"] else None
    except HubError as error:
        raise failed("Not loaded", error) from None
    finally:
        database.dispose()
    table = Table("Organizations", "count")
    for key in ("created", "updated", "unchanged"):
        table.add_row(key, str(counts[key]))
    console.print(table)
    console.print(f"[green]Roster {path.name} loaded[/]: {len(organizations)} organizations")
    if remarked is not None:
        console.print(f"互认 results qualified by hospital level re-marked: {remarked['remarked']}")


@registry_app.command("list")
def registry_list() -> None:
    """List the stored Organizations as a tree (region → consortium → zone → institution)."""
    database = open_database()
    try:
        rows = [summary(o) for o in _organizations(database)]
    except HubError as error:
        raise failed("Cannot list", error) from None
    finally:
        database.dispose()
    table = Table("id", "name", "kind", "role", "level", "parent")
    for depth, row in _tree_order(rows):
        table.add_row(row["id"], "  " * depth + row["name"], row["kind"],
                      ROLES.get(row["role"], row["role"]), LEVELS.get(row["level"], row["level"]), row["parent"])
    console.print(table)
    console.print(f"{len(rows)} organizations")


def _tree_order(rows: list[dict[str, str]]) -> list[tuple[int, dict[str, str]]]:
    """``rows`` depth-first from their roots (a parent not stored, or none); lead institutions first, then by id."""
    ids = {row["id"] for row in rows}
    children: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        children.setdefault(row["parent"] if row["parent"] in ids else "", []).append(row)
    ordered: list[tuple[int, dict[str, str]]] = []
    seen: set[str] = set()
    stack = [(0, row) for row in sorted(children.get("", []), key=_sibling_order, reverse=True)]
    while stack:
        depth, row = stack.pop()
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        ordered.append((depth, row))
        kids = sorted(children.get(row["id"], []), key=_sibling_order, reverse=True)
        stack += [(depth + 1, kid) for kid in kids]
    ordered += [(0, row) for row in sorted(rows, key=lambda r: r["id"]) if row["id"] not in seen]  # cycles
    return ordered


def _sibling_order(row: dict[str, str]) -> tuple[bool, str]:
    return row["role"] != "lead", row["id"]
