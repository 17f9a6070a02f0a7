"""The demo's synthetic consortium: generate its source systems once, register them, ingest them with progress.

The generated files live in ``var/demo`` (databases, ``manifest.json``) and ``var/drop/demo-tcm-lis`` (HL7
files). The manifest records what was generated (seed, residents, the day it was generated for, each
source's rows, the rows it must quarantine and the local codes it sent), so a rerun reuses the files —
the ingest's watermarks then read nothing new — and a test can check the hub against it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hub.cli.demo_source import DEMO_INSTITUTION, DEMO_SOURCE, fill_yushan
from hub.errors import HubError, InvalidRequest, NotFound
from hub.fhir.instants import now_utc
from hub.fhir.search_values import local_zone
from hub.ingest.pipeline import IngestOptions, IngestRun, RunCounts, RunResult
from hub.registry.sources import get_source, open_adapter, register_source
from hub.store.database import Database
from hub.synthetic.consortium import ConsortiumGenerator, ConsortiumPlan
from hub.synthetic.vendors import DemoSource, Written, demo_sources, write_source

#: Ingest order: a hospital's patients (HIS) before its lab results (LIS).
_ORDER = {"his-pinyin": 0, "frontdb": 1, "lis-english": 2, "hl7v2-drop": 3}
MANIFEST = "manifest.json"


def _institutions(roster: Path) -> list[dict[str, Any]]:
    entries = yaml.safe_load(roster.read_text(encoding="utf-8"))["organizations"]
    return [e for e in entries if e.get("kind") == "institution"]


def _registered(database: Database, source_id: str) -> bool:
    try:
        get_source(database, source_id)
    except NotFound:
        return False
    return True


def _manifest(plan: ConsortiumPlan, sources: list[DemoSource], written: dict[str, Written],
              database: str) -> dict[str, Any]:
    return {
        "seed": plan.seed, "patients": plan.patients, "today": plan.today.isoformat(), "database": database,
        "generated_at": now_utc().isoformat(),
        "sources": [{**asdict(s), "path": str(s.path), "rows": written[s.source_id].rows,
                     "dirty": written[s.source_id].dirty,
                     "codes": [[e, c, n] for (e, c), n in sorted(written[s.source_id].codes.items())]}
                    for s in sources],
        # who each registration really is (synthetic labels, no personal data): what the EMPI should find
        "labels": {org: {r.key: r.label for r in data.registrations} for org, data in plan.institutions.items()},
        "typo_pairs": plan.typo_pairs,
        "recent_labs": [{"label": label, "site": site, "patient": key, "lab": lab, "reported": reported.isoformat()}
                        for label, site, key, lab, reported in plan.recent_labs],
        "exams": {institution: [[e.key, e.item[2]] for e in data.exams]
                  for institution, data in plan.institutions.items() if data.exams},
    }


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for key in ("seed", "patients", "today", "database", "sources", "recent_labs", "exams"):
            manifest[key]  # noqa: B018 - present
        return dict(manifest)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidRequest(f"{path} cannot be read ({type(error).__name__}): remove {path.parent} and start "
                             "with a new hub database to generate the demo again") from None


def prepare(database: Database, directory: Path, drop: Path, roster: Path, seed: int, patients: int,
            described: str, console: Console) -> dict[str, Any]:
    """The manifest of the demo's sources: generated now when the hub database (``described``, for messages)
    holds none of them, else the one on disk — which must be of the same ``seed`` and ``patients``
    (InvalidRequest otherwise, as when ``directory`` holds another database's demo)."""
    path = directory / MANIFEST
    if _registered(database, "demo-ks1-his"):
        if not path.exists():
            raise InvalidRequest(f"The hub database ({described}) holds the demo's sources, but {path} is gone: "
                                 "start with a new hub database to generate them again")
        manifest = _read_manifest(path)
        if (manifest["seed"], manifest["patients"]) != (seed, patients):
            raise InvalidRequest(f"The hub database ({described}) holds the demo generated with --seed "
                                 f"{manifest['seed']} --patients {manifest['patients']}: rerun with those, or "
                                 f"start with a new hub database and remove {directory} to generate another")
        console.print(f"Synthetic consortium of {manifest['today']} (seed {seed}, {patients} residents): reused")
        return manifest
    other = _read_manifest(path)["database"] if path.exists() else described
    if other != described:
        raise InvalidRequest(f"{directory} holds the demo of another hub database ({other}): remove {directory} to "
                             f"generate the demo for {described}")
    shutil.rmtree(directory, ignore_errors=True)
    shutil.rmtree(drop / "demo-tcm-lis", ignore_errors=True)
    directory.mkdir(parents=True)
    institutions = _institutions(roster)
    today = now_utc().astimezone(local_zone()).date()
    plan = ConsortiumGenerator([(i["id"], i.get("level", "")) for i in institutions], seed, today).plan(patients)
    sources = demo_sources(plan, {i["id"]: i["name"] for i in institutions}, directory.resolve(), drop.resolve(),
                           (DEMO_INSTITUTION, DEMO_SOURCE))
    written: dict[str, Written] = {}
    for source in sources:
        written[source.source_id] = fill_yushan(source.path) if source.source_id == DEMO_SOURCE else Written()
        written[source.source_id].add(write_source(source, plan.institutions[source.institution]))
    manifest = _manifest(plan, sources, written, described)
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    rows = sum(w.rows for w in written.values())
    console.print(f"Synthetic consortium of {today} (seed {seed}): {patients} residents, {len(sources)} source "
                  f"systems in 4 vendor styles, {rows} source rows written to {directory}/ and {drop}/demo-tcm-lis/")
    return manifest


def source_of(entry: dict[str, Any]) -> DemoSource:
    """The :class:`DemoSource` of a manifest entry."""
    fields = {k: entry[k] for k in ("source_id", "institution", "name", "kind", "adapter", "style", "options")}
    return DemoSource(path=Path(entry["path"]), **fields)


def ingest_all(database: Database, manifest: dict[str, Any], console: Console) -> list[RunResult]:
    """Register the manifest's sources (once) and run each, a progress bar per source; the runs."""
    entries = sorted(manifest["sources"], key=lambda e: (_ORDER[e["adapter"]], e["source_id"]))
    results = []
    quiet = logging.getLogger("hub.ingest")  # the bars say what its start and end lines would
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        _run_all(database, entries, console, results)
    finally:
        quiet.setLevel(level)
    return results


def _run_all(database: Database, entries: list[dict[str, Any]], console: Console, results: list[RunResult]) -> None:
    with Progress(TextColumn("{task.description:<28}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), console=console) as progress:
        for entry in entries:
            source = source_of(entry)
            task = progress.add_task(source.source_id, total=entry["rows"], counts="")

            def show(_kind: str, counts: RunCounts, task: Any = task) -> None:
                progress.update(task, completed=counts.records_read,
                                counts=f"quarantined {counts.quarantined}" if counts.quarantined else "")

            result = run_source(database, source, show)
            progress.update(task, completed=entry["rows"] if result.status == "succeeded" else None,
                            counts=_counts(result))
            results.append(result)


def _counts(result: RunResult) -> str:
    counts = result.counts
    text = f"{result.status}: +{counts.created}"
    if counts.quarantined:
        text += f", quarantined {counts.quarantined}"
    return text + (f" — {result.error}" if result.error else "")


def run_source(database: Database, source: DemoSource,
               progress: Callable[[str, RunCounts], None] | None = None) -> RunResult:
    """Register ``source`` (once) and run it now (one connection attempt: the files are local)."""
    return IngestRun(database, _source_record(database, source), open_adapter,
                     options=IngestOptions(page_size=1000, attempts=1), progress=progress).run("manual")


def run_demo_source(database: Database, directory: Path) -> RunResult | str:
    """The hand-made sample alone: its front-end database created once in ``directory``, registered once and
    run; the run, or why not."""
    path = (directory / "demo-frontdb-yushan.db").resolve()
    if not path.exists():
        fill_yushan(path)
    source = DemoSource(DEMO_SOURCE, DEMO_INSTITUTION, "玉山镇社区卫生服务中心 前置库", "EHR", "frontdb", "frontdb", path)
    try:
        return run_source(database, source)
    except HubError as error:
        return error.message


def _source_record(database: Database, source: DemoSource) -> Any:
    try:
        return get_source(database, source.source_id)
    except NotFound:
        return register_source(database, {
            "source_id": source.source_id, "institution": source.institution, "name": source.name,
            "system_kind": source.kind, "adapter": source.adapter, "connection": source.connection,
            "options": source.options, "schedule": "*/30 * * * *"})


def recognition_example(manifest: dict[str, Any]) -> dict[str, str] | None:
    """A resident with a blood count at the lead hospital in the two days before the demo was generated:
    their home ``site``, their ``identifier`` there and when the count was ``reported`` (local time)."""
    for entry in manifest["recent_labs"]:
        return {"site": entry["site"], "identifier": f"urn:hub:mrn:{entry['site']}|{entry['patient']}",
                "reported": entry["reported"]}
    return None


def cds_request(example: dict[str, str], code: str = "718-7") -> dict[str, Any]:
    """An ``order-sign`` CDS Hooks request of the example's site HIS ordering a blood count for the resident."""
    system, value = example["identifier"].split("|", 1)
    return {
        "hook": "order-sign", "hookInstance": "d1f1c1a0-0000-4000-8000-000000000001",
        "context": {"userId": "Practitioner/demo-gp", "patientId": "his-1",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                        "resourceType": "ServiceRequest", "id": "demo-order-1", "status": "draft", "intent": "order",
                        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": "血常规"},
                        "subject": {"reference": "Patient/his-1"}}}]}},
        "prefetch": {"patient": {"resourceType": "Patient", "id": "his-1",
                                 "identifier": [{"system": system, "value": value}]}},
    }
