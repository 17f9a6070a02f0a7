"""``hub telediagnosis``: reading centers and readers, intake, worklists, the SLA sweep, the figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from importlib.abc import Traversable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from hub.cli.database import command_database
from hub.fhir.access import INSTITUTION_TAG
from hub.fhir.instants import now_utc
from hub.store.database import Database
from hub.telediagnosis.exams import SNOMED
from hub.telediagnosis.figures import figures as tele_figures
from hub.telediagnosis.figures import local_days
from hub.telediagnosis.readers import DCM
from hub.telediagnosis.service import Telediagnosis
from hub.telediagnosis.sla import sweep

tele_app = typer.Typer(help="远程诊断 (分布式检查、集中式诊断): centers, readers, worklists, SLA sweep, figures.",
                       no_args_is_help=True)
console = Console(soft_wrap=True)
T = TypeVar("T")


def _run(action: str, work: Callable[[Telediagnosis], T]) -> T:
    """``work`` on the tele-diagnosis service of the configured database; a refusal is printed, exit 1."""
    with command_database(action) as database:
        return work(Telediagnosis(database))


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, ensure_ascii=False, default=str))


_FILE = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="YAML or JSON")


@tele_app.command("config")
def config(path: Path = _FILE) -> None:
    """Put a configuration in force: reading centers, sites, subspecialty rules, SLA targets."""
    outcome = _run("Configuration not loaded", lambda tele: tele.load_config(path.read_bytes(), "cli"))
    console.print(f"Tele-diagnosis configuration {outcome['version']}: {outcome['centers']} reading centers")


@tele_app.command("readers")
def readers(path: Path = _FILE) -> None:
    """Write the reader roster (a Practitioner and a PractitionerRole each) and start the shifts it names."""
    outcome = _run("Readers not loaded", lambda tele: tele.load_readers(path.read_bytes()))
    console.print(f"{outcome['readers']} readers ({outcome['written']} resources written), "
                  f"{outcome['shifts']} shifts set")


@tele_app.command("shift")
def shift(reader: str = typer.Argument(..., help="PractitionerRole id"),
          on: bool = typer.Option(True, "--on/--off", help="Start or end the shift")) -> None:
    """Start or end a reader's shift."""
    _print_json(_run("Shift not changed", lambda tele: tele.set_shift(reader, on)))


@tele_app.command("intake")
def intake() -> None:
    """Take in the exams written since the last run (the API process does it every second)."""
    total = _run("Intake failed", drain_intake)
    console.print(f"Intake: {total['exams']} exams, {total['created']} tasks created, {total['attached']} attached, "
                  f"{total['cancelled']} cancelled, {total['skipped']} skipped")


def drain_intake(tele: Telediagnosis) -> dict[str, int]:
    """Take in every exam waiting (in batches); the totals."""
    total = {"exams": 0, "created": 0, "attached": 0, "cancelled": 0, "skipped": 0}
    while True:
        stats = tele.run_intake()
        for key, value in stats.as_dict().items():
            total[key] += value
        if stats.exams == 0:
            return total


@tele_app.command("sweep")
def sweep_command() -> None:
    """Run the SLA sweep once (expired claims, 50 % reassignments and reminders, 100 % escalations)."""
    _print_json(_run("Sweep failed", lambda tele: sweep(tele).as_dict()))


@tele_app.command("recount")
def recount() -> None:
    """Count every reader's open tasks again from the tasks (a repair, after tasks were changed by hand)."""
    counted = _run("Not recounted", lambda tele: tele.recount())
    console.print(f"Open tasks counted again for {counted} readers")


@tele_app.command("worklist")
def worklist(reader: str = typer.Option(None, help="PractitionerRole id"),
             center: str = typer.Option(None, help="Reading center id")) -> None:
    """A reader's or a center's open tasks, most urgent first; prints JSON."""
    _print_json(_run("No worklist", lambda tele: tele.worklist(reader=reader, center=center)))


@tele_app.command("figures")
def figures(first: datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"]),
            last: datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"]),
            by: str = typer.Option("center", help="site, center or modality")) -> None:
    """Volume, TAT p50/p90, SLA compliance and backlog of tasks created from --from to --to; prints JSON."""
    _print_json(_run("No figures", lambda tele: tele_figures(tele.database, *local_days(first.date(), last.date()),
                                                             by, now_utc())))


def load_tele_samples(database: Database, samples: Traversable) -> str:
    """Load the sample configuration and reader roster (the demo); a one-line summary."""
    tele = Telediagnosis(database)
    loaded = tele.load_config((samples / "telediagnosis.yaml").read_bytes(), "demo")
    roster = tele.load_readers((samples / "telediagnosis-readers.yaml").read_bytes())
    return f"{loaded['centers']} reading centers, {roster['readers']} readers ({roster['shifts']} on shift)"


#: The demo's exams: a chest radiograph and an emergency ECG done at 玉山镇社区卫生服务中心, read centrally.
DEMO_EXAMS = (("img-demo-tele-dx", "DX", "51185008", "胸部", "routine"),
              ("img-demo-tele-ecg", "ECG", "80891009", "心脏", "stat"))


def demo_exams(database: Database, site: str, patient_identifier: str) -> list[dict[str, Any]]:
    """Write the demo's exams at ``site`` for the patient of ``patient_identifier`` (once) and take them in;
    the reading tasks."""
    tele = Telediagnosis(database)
    with database.fhir_service(write=True) as service:
        found = service.find_existing("Patient", f"identifier={patient_identifier}")
        subject = f"Patient/{found.id}" if found is not None else "Patient/pat-1"
        for number, (study_id, modality, body_code, body_site, priority) in enumerate(DEMO_EXAMS, start=1):
            if service.repository.read_current("ImagingStudy", study_id) is None:
                order_id = study_id.replace("img-", "sr-")
                service.update("ServiceRequest", order_id, {  # the site's own order: its priority counts
                    "resourceType": "ServiceRequest", "id": order_id, "status": "active", "intent": "order",
                    "priority": priority, "meta": {"tag": [{"system": INSTITUTION_TAG, "code": site}]},
                    "code": {"coding": [{"system": DCM, "code": modality}], "text": f"{body_site} {modality}"},
                    "subject": {"reference": subject}})
                service.update("ImagingStudy", study_id, {
                    "basedOn": [{"reference": f"ServiceRequest/{order_id}"}],
                    "resourceType": "ImagingStudy", "id": study_id, "status": "available",
                    "meta": {"tag": [{"system": INSTITUTION_TAG, "code": site}]},
                    "subject": {"reference": subject}, "started": now_utc().isoformat(),
                    "modality": [{"system": DCM, "code": modality}],
                    "description": f"{body_site} {modality}",
                    "series": [{"uid": f"2.25.20261206{number}", "modality": {"system": DCM, "code": modality},
                                "bodySite": {"system": SNOMED, "code": body_code,
                                             "display": body_site}}]})
    drain_intake(tele)
    rows = []
    with tele.step() as step:
        for study_id, *_rest in DEMO_EXAMS:
            row = step.store.task_for([f"ImagingStudy/{study_id}"])
            if row is not None:
                rows.append(row)
    return rows
