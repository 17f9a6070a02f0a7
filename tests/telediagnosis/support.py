"""A region with two consortia and reading centers, readers, a clock the tests move, and exams."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from hub.fhir.access import INSTITUTION_TAG, Access
from hub.registry.roster import apply_roster, load_roster
from hub.store.database import Database
from hub.telediagnosis.exams import SNOMED
from hub.telediagnosis.readers import DCM
from hub.telediagnosis.service import Telediagnosis

ROSTER = Path(__file__).resolve().parents[2] / "hub" / "samples" / "kunshan-roster.yaml"
#: A community health center and a township health center of the 昆山 consortium (sites), the lead hospital.
SITE, TOWNSHIP, LEAD = "org-ks-chc-yushan", "org-ks-thc-jinxi", "org-ks-1"
#: A site and a reading center of another consortium of the same region, and a center of another region.
OTHER_SITE, OTHER_CENTER, FAR_CENTER = "org-other-chc", "org-other-imaging", "org-far-imaging"
HEAD = "69536005"

CONFIG = """
version: test-1
claim_timeout_minutes: 30
warn_at: 0.5
centers:
  - {id: ks-imaging, institution: org-ks-imaging, name: 昆山市医学影像诊断中心, modalities: [CT, DX, MR, US],
     supervisor: img-chief}
  - {id: ks-ecg, institution: org-ks-ecg, name: 昆山市心电诊断中心, modalities: [ECG]}
  - {id: other-imaging, institution: org-other-imaging, name: 另一医共体影像中心, modalities: [CT, DX, MR]}
  - {id: far-imaging, institution: org-far-imaging, name: 外地影像中心, modalities: [CT, DX, MR]}
subspecialties:
  - {modality: MR, body_sites: ["69536005", 头颅], subspecialty: neuro}
sla_minutes:
  CT: {stat: 60, routine: 1440}
"""

READERS = """
readers:
  - {id: img-chief, name: 周主任, center: ks-imaging, modalities: [CT, DX, MR, US], subspecialties: [neuro],
     capacity: 5, supervisor: true, on_shift: true}
  - {id: img-a, name: 李医生, center: ks-imaging, modalities: [CT, DX, MR], subspecialties: [neuro], capacity: 3,
     on_shift: true}
  - {id: img-b, name: 王医生, center: ks-imaging, modalities: [CT, DX, MR], capacity: 3, on_shift: true}
  - {id: img-off, name: 赵医生, center: ks-imaging, modalities: [CT, DX, MR], subspecialties: [neuro], capacity: 9,
     on_shift: false}
  - {id: img-us, name: 陈医生, center: ks-imaging, modalities: [US], capacity: 9, on_shift: true}
  - {id: ecg-a, name: 徐医生, center: ks-ecg, modalities: [ECG], capacity: 20, on_shift: true}
  - {id: oth-a, name: 钱医生, center: other-imaging, modalities: [CT, DX, MR], subspecialties: [neuro], capacity: 5,
     on_shift: true}
  - {id: far-a, name: 孙医生, center: far-imaging, modalities: [CT, DX, MR], subspecialties: [neuro], capacity: 5,
     on_shift: true}
"""


class Clock:
    """A clock the test moves (starts at 10:00 local time, inside every center's hours)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 7, 2, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        """Move time on."""
        self.now += timedelta(minutes=minutes)


def _org(org_id: str, name: str, kind: str, parent: str | None, level: str | None = None) -> dict[str, Any]:
    types = [{"coding": [{"system": "urn:hub:organization-kind", "code": kind}]}]
    if level:
        types.append({"coding": [{"system": "urn:hub:institution-level", "code": level}]})
    org: dict[str, Any] = {"resourceType": "Organization", "id": org_id, "name": name, "active": True, "type": types}
    if parent:
        org["partOf"] = {"reference": f"Organization/{parent}"}
    return org


def region(database: Database, clock: Clock | None = None, *, readers: bool = True) -> Telediagnosis:
    """The sample roster plus another consortium (same region) and another region, the test configuration
    and readers; the tele-diagnosis service on ``clock``."""
    with database.fhir_service(write=True) as service:
        apply_roster(service, load_roster(ROSTER))
        for org in (_org("consortium-other", "另一医共体", "consortium", "region-ks"),
                    _org(OTHER_SITE, "另一社区卫生服务中心", "institution", "consortium-other", "chc"),
                    _org(OTHER_CENTER, "另一医共体影像中心", "institution", "consortium-other", "secondary"),
                    _org("region-far", "外地", "region", None),
                    _org("consortium-far", "外地医共体", "consortium", "region-far"),
                    _org(FAR_CENTER, "外地影像中心", "institution", "consortium-far", "secondary")):
            service.update("Organization", org["id"], org)
    tele = Telediagnosis(database, clock=clock or Clock())
    tele.load_config(CONFIG, "test")
    if readers:
        tele.load_readers(READERS)
    return tele


def study(study_id: str, site: str = SITE, modality: str = "CT", *, body_site: str | None = None,
          order: str | None = None, patient: str = "Patient/p-1", status: str = "available") -> dict[str, Any]:
    """An ImagingStudy done at ``site``."""
    series: dict[str, Any] = {"uid": "2.25.1", "modality": {"system": DCM, "code": modality}}
    if body_site:
        series["bodySite"] = {"system": SNOMED, "code": body_site}
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy", "id": study_id, "status": status,
        "meta": {"tag": [{"system": INSTITUTION_TAG, "code": site}]},
        "subject": {"reference": patient}, "modality": [{"system": DCM, "code": modality}], "series": [series]}
    if order:
        resource["basedOn"] = [{"reference": f"ServiceRequest/{order}"}]
    return resource


def order(order_id: str, site: str = SITE, modality: str = "CT", *, priority: str = "routine",
          performer: str | None = None, patient: str = "Patient/p-1") -> dict[str, Any]:
    """A ServiceRequest of ``site`` (sent to ``performer``, when given)."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest", "id": order_id, "status": "active", "intent": "order",
        "priority": priority, "meta": {"tag": [{"system": INSTITUTION_TAG, "code": site}]},
        "code": {"coding": [{"system": DCM, "code": modality}]}, "subject": {"reference": patient}}
    if performer:
        resource["performer"] = [{"reference": f"Organization/{performer}"}]
    return resource


def put(database: Database, *resources: dict[str, Any]) -> None:
    """Write resources under their ids (as a site's adapter does)."""
    with database.fhir_service(write=True) as service:
        for resource in resources:
            service.update(resource["resourceType"], resource["id"], resource)


def exam(tele: Telediagnosis, *resources: dict[str, Any]) -> dict[str, Any]:
    """Write the exam resources, run the intake; the task row of the last one."""
    put(tele.database, *resources)
    tele.run_intake()
    last = resources[-1]
    return task_of(tele, f"{last['resourceType']}/{last['id']}")


def task_of(tele: Telediagnosis, focus: str) -> dict[str, Any]:
    """The task row reading ``focus`` (its focus or its order)."""
    with tele.step() as step:
        row = step.store.task_for([focus])
    assert row is not None, f"no task for {focus}"
    return row


def task_resource(tele: Telediagnosis, task_id: str) -> dict[str, Any]:
    """The stored Task resource."""
    with tele.step() as step:
        return step.task(task_id)


def search(database: Database, resource_type: str, params: list[tuple[str, str]],
           access: Access | None = None) -> list[dict[str, Any]]:
    """The resources a FHIR search finds (as ``access`` sees them)."""
    with database.fhir_service(write=False, access=access) as service:
        found = service.search(resource_type, params, "")
    return [e["resource"] for e in orjson.loads(orjson.dumps(found.body)).get("entry", [])]


#: A final report as a reader sends it.
FINAL_REPORT = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "影像诊断"},
                "conclusion": "未见异常"}


def reported_exams(database: Database, clock: Clock) -> Telediagnosis:
    """The region with four exams reported and one left open, at known turnarounds from ``clock.now``: CT a and b
    of the site (routine, 20 and 40 minutes), a stat CT c of the township (90 minutes: late), an ECG of the site
    (20 minutes), and a DX of the other consortium's site still open. The clock is left 20 minutes on."""
    tele = region(database, clock)
    start = clock.now
    minutes = {"a": 20, "b": 40, "c": 90}  # a and b routine (24 hours); c stat (60 minutes): late
    put(database, order("o-c", site=TOWNSHIP, priority="stat"))
    rows = {name: exam(tele, study(f"s-{name}", site=site, modality="CT", order="o-c" if name == "c" else None))
            for name, site in (("a", SITE), ("b", SITE), ("c", TOWNSHIP))}
    ecg = exam(tele, study("s-ecg", modality="ECG"))
    exam(tele, study("s-open", site=OTHER_SITE, modality="DX"))
    for name, row in rows.items():
        clock.now = start + timedelta(minutes=minutes[name])
        tele.claim(row["task_id"], row["reader"])
        tele.report(row["task_id"], row["reader"], FINAL_REPORT)
    clock.now = start + timedelta(minutes=20)
    tele.claim(ecg["task_id"], "ecg-a")
    tele.report(ecg["task_id"], "ecg-a", FINAL_REPORT)
    return tele
