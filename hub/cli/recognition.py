"""``hub recognition``: the 互认 catalogue and quality-control records, a check, the figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib.abc import Traversable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from hub.cli.database import command_database
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.instants import now_utc
from hub.fhir.search_values import local_zone
from hub.recognition.check import CheckRequest
from hub.recognition.eqa import read_eqa_csv
from hub.recognition.service import Recognition, install
from hub.store.database import Database

recognition_app = typer.Typer(help="检查检验结果互认: catalogue, quality control, checks, figures.",
                              no_args_is_help=True)
console = Console(soft_wrap=True)
ACTOR = "cli"
T = TypeVar("T")


def _run(action: str, work: Callable[[Recognition], T]) -> T:
    """``work`` on the recognition service of the configured database; a refusal is printed, exit 1."""
    with command_database(action) as database:
        return work(install(database))


@recognition_app.command("catalogue")
def catalogue(path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                          help="The catalogue (YAML or JSON)")) -> None:
    """Put a recognition catalogue in force (the results of changed items are re-marked HR)."""
    outcome = _run("Catalogue not loaded", lambda recognition: recognition.load_catalogue(path.read_bytes(), ACTOR))
    console.print(f"Catalogue {outcome['version']}: {outcome['items']} items, {outcome['changed_items']} changed; "
                  f"results re-marked: {outcome['remarked']}")


@recognition_app.command("eqa")
def eqa(path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                    help="CSV: institution,item,year,passed[,scheme,certificate]")) -> None:
    """Record quality-control (室间质评) results (the results they decide are re-marked HR)."""
    outcome = _run("Quality-control records not loaded",
                   lambda recognition: recognition.save_eqa(read_eqa_csv(path.read_bytes()), ACTOR))
    console.print(f"Recorded {outcome['saved']} quality-control results; results re-marked: {outcome['remarked']}")


@recognition_app.command("remark")
def remark_command(level_rules_only: bool = typer.Option(
        False, "--level-rules-only", help="Only items qualified by hospital level (after institutions changed)")) -> None:
    """Set the HR mark again on every stored result of the catalogue's items (a repair; right marks stay)."""
    outcome = _run("Not re-marked", lambda recognition: recognition.remark(level_rules_only=level_rules_only))
    console.print(f"{outcome['items']} items: results re-marked {outcome['remarked']}")


@recognition_app.command("check")
def check(
    patient: str = typer.Option(..., help="Patient/<id> or an identifier system|value"),
    institution: str = typer.Option(..., help="The ordering institution (Organization id)"),
    code: str = typer.Option(..., help="The requested item: a local code system|code, or LOINC / exam item"),
    at: datetime = typer.Option(None, help="The order time (default: now)"),
    unit: str = typer.Option(None, help="The unit to offer results in (UCUM)"),
) -> None:
    """Check an order for recognizable prior results (recorded like a check over the API); prints JSON."""
    moment = (at if at.tzinfo else at.replace(tzinfo=local_zone())) if at else None  # local time by default
    order = CheckRequest(patient, institution, code, moment, unit, origin="cli")
    [result] = _run("Check failed", lambda recognition: recognition.check([order], ACTOR))
    typer.echo(json.dumps(result.as_dict(), ensure_ascii=False, indent=2, default=str))


@recognition_app.command("figures")
def figures(
    first: datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"], help="First day"),
    last: datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"], help="Last day"),
    period: str = typer.Option("month", help="day, month, year or total"),
    by: str = typer.Option("institution", help="institution, consortium or region"),
) -> None:
    """The recognition figures per ordering institution (or consortium, region) and period; prints JSON."""
    out = _run("No figures", lambda recognition: recognition.figures(first.date(), last.date(), period=period,
                                                                   group=by))
    typer.echo(json.dumps(out, ensure_ascii=False, indent=2))


#: The demo's recent result: 张伟's fasting glucose at the lead hospital, yesterday (a 互认 example for 玉山镇).
DEMO_RESULT = "obs-demo-recognition"


def load_recognition_samples(database: Database, samples: Traversable) -> str:
    """The sample catalogue and quality-control records, and a recent result to recognize (for ``hub demo``)."""
    recognition = install(database)
    catalogue = recognition.load_catalogue((samples / "recognition-catalogue.yaml").read_bytes(), "demo")
    records = read_eqa_csv((samples / "recognition-eqa.csv").read_bytes())
    yesterday = (now_utc() - timedelta(days=1)).astimezone(local_zone()).replace(microsecond=0)
    latest = max(r["year"] for r in records)
    if yesterday.year > latest:  # the sample's latest round stands for this year's, so the demo result qualifies
        records += [{**r, "year": yesterday.year} for r in records if r["year"] == latest]
    eqa = recognition.save_eqa(records, "demo")
    with database.fhir_service(write=True) as service:
        stored = service.repository.read_current("Observation", DEMO_RESULT)
        if stored is None or stored.deleted:  # once: a rerun of the demo writes no new version
            service.update("Observation", DEMO_RESULT, {
                "resourceType": "Observation", "id": DEMO_RESULT, "status": "final",
                "meta": {"tag": [{"system": INSTITUTION_TAG, "code": "org-ks-1"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "1558-6", "display": "空腹血糖"}],
                         "text": "空腹血糖"},
                "subject": {"reference": "Patient/pat-1"}, "effectiveDateTime": yesterday.isoformat(),
                "performer": [{"reference": "Organization/org-ks-1"}],
                "valueQuantity": {"value": 6.9, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                                  "code": "mmol/L"}})
    return (f"catalogue {catalogue['version']} ({catalogue['items']} items), {eqa['saved']} quality-control "
            f"results, results marked HR: {catalogue['remarked']['updated'] + eqa['remarked']['updated']}")
