"""What ``hub demo`` tells its user at the end: working credentials, a summary of what came in, and where to look."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hub.auth.roles import Role
from hub.cli.demo_consortium import cds_request, recognition_example
from hub.cli.demo_source import DEMO_INSTITUTION
from hub.cli.security import register_client
from hub.ingest.pipeline import RunResult
from hub.store.database import Database
from hub.store.overview import overview

CREDENTIALS = "credentials.json"
#: The demo's API clients: (short name, name, role, reach); the HIS is the ordering site's (see demo_clients).
DEMO_CLIENTS: tuple[tuple[str, str, Role, dict[str, list[str]]], ...] = (
    ("admin", "demo admin", Role.ADMIN, {}),
    ("app", "demo app (昆山医共体, read only)", Role.APP, {"consortia": ["consortium-ks"]}),
    ("source-admin", "demo hospital IT of 昆山市中医医院", Role.SOURCE_ADMIN, {"institutions": ["org-ks-tcm"]}),
    ("governance", "demo data governance (数据治理科)", Role.GOVERNANCE, {}),
    ("his", "demo HIS (互认 CDS Hooks)", Role.CLINICIAN_CDS, {"institutions": [DEMO_INSTITUTION]}),
    ("reader", "demo worklist of 昆山市医学影像诊断中心 (reads the consortium's exams)", Role.READER,
     {"institutions": ["org-ks-imaging"], "consortia": ["consortium-ks"]}),
)


def demo_clients(database: Database, directory: Path, console: Console,
                 his_site: str = DEMO_INSTITUTION) -> dict[str, tuple[str, str]]:
    """The demo's clients by short name as (client_id, secret): those of ``directory/credentials.json`` still
    active, and new ones for the others (written there, readable by the owner only). ``his_site`` is the
    institution the demo HIS orders for."""
    path = directory / CREDENTIALS
    saved: dict[str, list[str]] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    out: dict[str, tuple[str, str]] = {}
    with database.clients(write=False) as store:
        for short, pair in saved.items():
            if (store.get(pair[0]) or {}).get("active"):
                out[short] = (pair[0], pair[1])
    if len(out) == len(DEMO_CLIENTS):
        console.print(f"Demo API clients: as before ({path})")
        return out
    console.print("[bold]Demo API clients[/] (the hub stores only their secrets' hashes; the demo keeps them in "
                  f"{path} for reruns):")
    for short, name, role, reach in DEMO_CLIENTS:
        if short in out:
            continue
        if short == "his":
            name, reach = f"demo HIS of {his_site} (互认 CDS Hooks)", {"institutions": [his_site]}
        client, secret = register_client(database, name, role, **reach)
        console.print(f"  {name} [{role.value}]\n    client_id={client.client_id}\n    client_secret={secret}")
        out[short] = (client.client_id, secret or "")
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as file:
        json.dump(out, file, indent=1)
    return out


def print_summary(database: Database, runs: list[RunResult], console: Console) -> None:
    """Records in, quarantined, conflicts, EMPI links and routed tasks, as the database holds them now."""
    with database.engine.connect() as connection:
        seen = overview(connection)
    table = Table("", "", title="Summary (汇总)", show_header=False)
    read = sum(r.counts.records_read for r in runs)
    created = sum(r.counts.created for r in runs)
    failed = [r.source_id for r in runs if r.status != "succeeded"]
    table.add_row("records in (this run)", f"{read} rows read from {len(runs)} sources, {created} resources created"
                  + (f"; [red]failed: {', '.join(failed)}[/]" if failed else ""))
    kinds = ("Patient", "Encounter", "Condition", "Observation", "DiagnosticReport", "ImagingStudy", "ServiceRequest",
             "Task")
    table.add_row("resources stored", ", ".join(f"{k} {seen.resources.get(k, 0)}" for k in kinds)
                  + f"; all {sum(seen.resources.values())}")
    table.add_row("quarantined rows waiting", f"{sum(seen.quarantined.values())} in {len(seen.quarantined)} sources "
                  "(hub ingest quarantine <source>)")
    table.add_row("mapping conflicts open", f"{sum(seen.conflicts.values())}: "
                  + ", ".join(f"{kind} {n}" for kind, n in sorted(seen.conflicts.items())))
    table.add_row("master patient index", f"{seen.empi_records} source Patients → {seen.empi_persons} regional "
                  f"persons ({seen.linked_records} records linked to another), {seen.empi_reviews} match reviews")
    tasks: dict[str, dict[str, int]] = {}
    for (center, state), n in seen.tasks.items():
        tasks.setdefault(center, {})[state] = n
    table.add_row("tele-diagnosis tasks", "; ".join(
        f"{center}: " + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
        for center, states in sorted(tasks.items())) or "none")
    console.print(table)


def print_guide(base: str, clients: dict[str, tuple[str, str]], manifest: dict[str, Any], directory: Path,
                console: Console) -> None:
    """Where to look, with the demo's working credentials."""
    def token(name: str) -> str:
        client_id, secret = clients[name]
        return (f"$(curl -s -u {client_id}:{secret} -d grant_type=client_credentials {base}/auth/token "
                "| python3 -c 'import sys, json; print(json.load(sys.stdin)[\"access_token\"])')")

    console.print(f"[bold]The hub[/] {base}  (FHIR {base}/fhir, CapabilityStatement {base}/fhir/metadata, "
                  f"OpenAPI {base}/openapi.json)")
    governance = clients["governance"]
    console.print(f"Dashboards (一屏看全区):   {base}/dashboards")
    console.print(f"Mapping review (映射冲突): {base}/governance/   EMPI review: {base}/governance/match-review")
    console.print(f"  sign in on the pages with client_id={governance[0]} client_secret={governance[1]}")
    console.print("Example FHIR query (the consortium's app: hypertensive residents' blood pressures, newest first):")
    console.print(f"  TOKEN={token('app')}")
    console.print(f"  curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/fhir/Observation?code=http://loinc.org|85354-9"
                  "&_sort=-date&_count=5&_include=Observation:subject'")
    example = recognition_example(manifest)
    if example is not None:
        reported = datetime.fromisoformat(example["reported"])
        hook = directory / "cds-order-sign.json"
        hook.write_text(json.dumps(cds_request(example), ensure_ascii=False, indent=1), encoding="utf-8")
        console.print(f"CDS Hooks (互认): {example['site']}'s HIS orders a blood count for {example['identifier']}, "
                      f"who had one at 昆山市第一人民医院 on {reported:%Y-%m-%d %H:%M} — the card says it can be "
                      f"recognized (blood counts: for 72 hours, until {reported + timedelta(hours=72):%Y-%m-%d %H:%M}; "
                      "a new hub database makes a fresh example):")
        console.print(f"  TOKEN={token('his')}")
        console.print(f"  curl -s -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
                      f"-d @{hook} {base}/cds-services/hr-order-sign")
    console.print(f"Reading worklist (影像中心): {base}/telediagnosis/worklist?center=ks-imaging  (demo worklist "
                  f"client {clients['reader'][0]})")
    console.print(f"Source systems (IT):     {base}/admin/sources ; hub sources list ; hub ingest runs")
    last = date.fromisoformat(manifest["today"]) - timedelta(days=1)  # the generated year of care
    console.print(f"Indicator (FHIR):        {base}/fhir/Measure/primary-care-share/$evaluate-measure?periodStart="
                  f"{last - timedelta(days=364)}&periodEnd={last}&subject=Organization/consortium-ks")
    admin = clients["admin"]
    console.print(f"Admin client:            client_id={admin[0]} client_secret={admin[1]}  (all credentials: "
                  f"{directory / CREDENTIALS})")
