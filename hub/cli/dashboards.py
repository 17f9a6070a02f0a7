"""``hub dashboards``: the indicators' Measures, their facts, and an indicator evaluated from the command line."""

from __future__ import annotations

import json
from datetime import date

import typer
from rich.console import Console
from rich.table import Table

from hub.cli.database import command_database
from hub.dashboards.definitions import measures
from hub.dashboards.report import compact, measure_report, parse_period
from hub.dashboards.service import Dashboards

dashboards_app = typer.Typer(help="一屏看全区: indicators (FHIR Measures), their facts, evaluation.",
                             no_args_is_help=True)
console = Console(soft_wrap=True)


@dashboards_app.command("measures")
def install() -> None:
    """Store the indicators' Measures (a new version only where a definition changed)."""
    with command_database("Measures not stored") as database:
        for line in Dashboards(database).install_measures():
            console.print(line)


@dashboards_app.command("refresh")
def refresh() -> None:
    """Read every write waiting into the indicators' facts (the API process does it in the background)."""
    with command_database("Facts not refreshed") as database:
        console.print(f"Facts refreshed: {Dashboards(database).refresh().as_dict()}")


@dashboards_app.command("rebuild")
def rebuild() -> None:
    """Forget every fact and read every stored resource again (after HUB_TIMEZONE changed, or to repair)."""
    with command_database("Facts not rebuilt") as database:
        console.print(f"Facts rebuilt: {Dashboards(database).rebuild().as_dict()}")


@dashboards_app.command("evaluate")
def evaluate(
    measure: str = typer.Argument(..., help=f"One of: {', '.join(measures())}"),
    period: str = typer.Option(str(date.today().year), help="2026, 2026-Q1 or 2026-03"),
    unit: str = typer.Option("", help="Region, consortium, zone or institution (Organization id); default: all"),
    report: bool = typer.Option(False, "--report", help="Print the FHIR MeasureReport instead of a table"),
) -> None:
    """An indicator for one unit and period, with its children (the drill-down)."""
    with command_database("Indicator not evaluated") as database:
        dashboards = Dashboards(database)
        first, last = parse_period(period)
        evaluation = dashboards.evaluate(measure, first, last, unit or None, None)
        if report:
            console.print_json(json.dumps(measure_report(evaluation, dashboards.clock()), ensure_ascii=False))
            return
        figures = compact(evaluation)
        table = Table(title=f"{figures['title']} · {evaluation.unit.name} · {first} – {last}")
        table.add_column("单位")
        for figure in figures["figures"]:
            table.add_column(figure["name"], justify="right")
        rows = [(evaluation.unit.name, {f["code"]: f for f in figures["figures"]})]
        rows += [(child["name"], child["figures"]) for child in figures["children"]]
        for name, values in rows:
            table.add_row(name, *(_shown(f["scoring"], values[f["code"]]["value"]) for f in figures["figures"]))
        console.print(table)


def _shown(scoring: str, value: float | None) -> str:
    if value is None:
        return "—"
    if scoring == "proportion":
        return f"{value * 100:.2f}%"
    return f"{value:.2f}" if scoring == "ratio" or not float(value).is_integer() else f"{int(value):,}"
