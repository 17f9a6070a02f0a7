"""FHIR Bulk Data $export: every resource exactly once, _since, _type and _typeFilter, the patient and
group levels (members, institutions, EMPI links), the transaction time, who may poll and fetch, cancel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from hub.auth.principal import Principal
from hub.auth.roles import Role, scope_ceiling
from hub.config import Settings
from hub.exports.jobs import ExportJobs, Kickoff
from hub.exports.runner import ExportRunner
from hub.fhir.access import INSTITUTION_TAG, Access
from hub.store.database import Database
from hub.store.exports import ExportJob
from tests.auth.support import principal
from tests.conftest import assert_outcome, bearer, fhir_client
from tests.empi.support import ZHANG_WEI_ID, run_empi, source_patient
from tests.exports.support import ASYNC, download, export, export_worker, keys, kick_off, wait

CITIZEN_ID = "urn:oid:2.16.156.10011.1.3"
APP = Principal("export-app", Role.APP, scope_ceiling(Role.APP))


def tag(institution: str) -> dict:
    return {"tag": [{"system": INSTITUTION_TAG, "code": institution}]}


def observation(obs_id: str, patient: str | None, institution: str = "org-a", code: str = "2345-7") -> dict:
    resource = {"resourceType": "Observation", "id": obs_id, "meta": tag(institution), "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    if patient:
        resource["subject"] = {"reference": f"Patient/{patient}"}
    return resource


def seed(database: Database) -> set[tuple[str, str]]:
    """A small consortium: two institutions under one, three patients, their results, one result of nobody."""
    resources = [
        {"resourceType": "Organization", "id": "cons", "name": "医共体"},
        {"resourceType": "Organization", "id": "org-a", "name": "甲医院", "partOf": {"reference": "Organization/cons"}},
        {"resourceType": "Organization", "id": "org-b", "name": "乙卫生院"},
        {"resourceType": "Patient", "id": "p1", "meta": tag("org-a"), "gender": "male",
         "identifier": [{"system": CITIZEN_ID, "value": "11010519491231002X"}]},
        {"resourceType": "Patient", "id": "p2", "meta": tag("org-a"), "gender": "female"},
        {"resourceType": "Patient", "id": "p3", "meta": tag("org-b"), "gender": "female"},
        observation("o1", "p1"), observation("o2", "p1", code="718-7"), observation("o3", "p2"),
        observation("o4", "p3", "org-b"), observation("o5", None),
        {"resourceType": "Encounter", "id": "e1", "meta": tag("org-a"), "status": "finished",
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "subject": {"reference": "Patient/p2"}},
    ]
    with database.fhir_service(write=True) as service:
        for resource in resources:
            service.update(resource["resourceType"], resource["id"], resource)
    return {(r["resourceType"], r["id"]) for r in resources}


@pytest.fixture
def small_files(settings: Settings) -> Settings:
    """The test settings with two resources per file, so that types span several files."""
    return Settings(**{**settings.__dict__, "export_file_resources": 2})


def test_system_export_holds_every_resource_exactly_once(
        server: str, database: Database, small_files: Settings) -> None:
    stored = seed(database)
    with export_worker(database, small_files), fhir_client(server, APP) as client:
        manifest, resources = export(client)
    assert keys(resources) == sorted(stored)  # each once, nothing else
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    assert manifest["request"].endswith("/fhir/$export")
    assert datetime.fromisoformat(manifest["transactionTime"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
    observations = [o for o in manifest["output"] if o["type"] == "Observation"]
    assert [o["count"] for o in observations] == [2, 2, 1]  # five Observations, two per file
    # As a read serves it: the ID number revealed for the client (it is sealed in the file on disk).
    with fhir_client(server) as admin:
        p1 = admin.get("/Patient/p1").json()
    assert next(r for r in resources if r["id"] == "p1") == p1
    files = list(Path(small_files.export_dir).rglob("Patient-*.ndjson"))
    assert files and all(b"11010519491231002X" not in f.read_bytes() for f in files)


def test_since_type_and_type_filter_choose_what_is_exported(server: str, database: Database) -> None:
    seed(database)
    with export_worker(database, database.settings), fhir_client(server, APP) as client:
        first, _ = export(client, _type="Observation")
        with database.fhir_service(write=True) as service:  # changed after the first export
            service.update("Observation", "o3", {**observation("o3", "p2"), "status": "amended"})
            service.update("Observation", "o6", observation("o6", "p2"))
        _, changed = export(client, _since=first["transactionTime"])
        assert keys(changed) == [("Observation", "o3"), ("Observation", "o6")]
        assert next(r for r in changed if r["id"] == "o3")["meta"]["versionId"] == "2"
        _, glucose = export(client, _type="Observation,Patient",
                            _typeFilter="Observation?code=http://loinc.org|2345-7&subject=Patient/p1")
        assert keys(glucose) == [("Observation", "o1"), ("Patient", "p1"), ("Patient", "p2"), ("Patient", "p3")]
        # Several filters of one type are alternatives; _elements keeps the named and the mandatory elements.
        manifest, either = export(client, _type="Observation", _elements="status",
                                  _typeFilter="Observation?subject=Patient/p3,Observation?code=718-7")
        assert keys(either) == [("Observation", "o2"), ("Observation", "o4")]
        # A filter without criteria is every resource of the type; an unencoded "+" in _outputFormat is fine.
        _, every = export(client, _type="Observation", _typeFilter="Observation?,Observation?code=718-7",
                          _outputFormat="application/fhir ndjson")
        assert len(every) == 6
        assert all(set(r) == {"resourceType", "id", "meta", "status", "code"} for r in either)  # code: mandatory
        assert all(t["code"] == "SUBSETTED" for r in either for t in r["meta"]["tag"] if t["system"] != INSTITUTION_TAG)


@pytest.fixture(params=["few members", "many members"])
def group_strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways a group's resources are found: by reference lookup (small groups), by probing each resource."""
    if request.param == "many members":
        monkeypatch.setattr("hub.exports.runner.FEW_MEMBERS", 0)


@pytest.mark.usefixtures("group_strategy")
def test_patient_and_group_levels_hold_the_patients_data(server: str, database: Database) -> None:
    seed(database)
    with database.fhir_service(write=True) as service:
        service.update("Group", "g1", {"resourceType": "Group", "id": "g1", "type": "person", "actual": True,
                                       "member": [{"entity": {"reference": "Patient/p2"}},
                                                  {"entity": {"reference": "Practitioner/dr1"}}]})
        service.update("Group", "cons-patients", {
            "resourceType": "Group", "id": "cons-patients", "type": "person", "actual": False,
            "name": "医共体签约居民",
            "characteristic": [{"code": {"coding": [{"system": "urn:hub:group", "code": "institution"}]},
                                "valueReference": {"reference": "Organization/cons"}, "exclude": False}]})
    with export_worker(database, database.settings), fhir_client(server, APP) as client:
        _, everyone = export(client, "/Patient/$export")
        # No Organization, no o5 (nobody's); Group g1 is in p2's compartment (Group.member).
        assert keys(everyone) == [("Encounter", "e1"), ("Group", "g1"), *(("Observation", f"o{i}") for i in range(1, 5)),
                                  ("Patient", "p1"), ("Patient", "p2"), ("Patient", "p3")]
        manifest, members = export(client, "/Group/g1/$export")
        assert keys(members) == [("Encounter", "e1"), ("Group", "g1"), ("Observation", "o3"), ("Patient", "p2")]
        (error,) = manifest["error"]  # the Practitioner member is reported, not exported
        assert "Practitioner/dr1" in download(client, error["url"])[0]["issue"][0]["diagnostics"]
        _, consortium = export(client, "/Group/cons-patients/$export", _type="Patient,Observation")
        assert keys(consortium) == [("Observation", "o1"), ("Observation", "o2"), ("Observation", "o3"),
                                    ("Patient", "p1"), ("Patient", "p2")]  # org-a is under cons; org-b is not


@pytest.mark.usefixtures("group_strategy")
def test_group_export_follows_the_master_patient_index(server: str, database: Database) -> None:
    with database.fhir_service(write=True) as service:
        for patient in (source_patient("org-a", "1", "张伟", id_number=ZHANG_WEI_ID),
                        source_patient("org-b", "9", "张伟", id_number=ZHANG_WEI_ID)):
            service.update("Patient", patient["id"], patient)
        service.update("Observation", "lab-b", observation("lab-b", "org-b-9", "org-b"))
        service.update("Group", "g", {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                                      "member": [{"entity": {"reference": "Patient/org-a-1"}}]})
    run_empi(database)  # the same valid ID number: one person
    with export_worker(database, database.settings), fhir_client(server, APP) as client:
        _, found = export(client, "/Group/g/$export", _type="Patient,Observation")
    golden = [r for r in found if any(t["system"] == "urn:hub:empi" and t["code"] == "golden" for t in r["meta"]["tag"])]
    assert len(golden) == 1 and {link["other"]["reference"] for link in golden[0]["link"]} == {
        "Patient/org-a-1", "Patient/org-b-9"}  # the regional person, with both hospitals' records
    assert keys([r for r in found if r not in golden]) == [
        ("Observation", "lab-b"), ("Patient", "org-a-1"), ("Patient", "org-b-9")]


def test_export_stands_for_its_transaction_time(server: str, database: Database) -> None:
    seed(database)
    with fhir_client(server, APP) as client:
        status_url = kick_off(client, _type="Observation")  # queued: no worker runs yet
        with database.fhir_service(write=True) as service:
            service.update("Observation", "o1", {**observation("o1", "p1"), "status": "amended"})
            service.update("Observation", "o9", observation("o9", "p1"))
            service.delete("Observation", "o2")
        with export_worker(database, database.settings):
            manifest = wait(client, status_url)
        exported = [r for item in manifest["output"] for r in download(client, item["url"])]
    assert keys(exported) == [("Observation", f"o{i}") for i in (1, 3, 4, 5)]  # o9 is newer; o2 deleted since
    assert next(r for r in exported if r["id"] == "o1")["status"] == "final"  # as it was then


def test_an_institution_bound_client_exports_its_institutions_only(server: str, database: Database) -> None:
    seed(database)
    bound = principal(Role.APP, consortia=("cons",), client_id="cons-app")
    with export_worker(database, database.settings), fhir_client(server, bound) as client:
        _, found = export(client, "/Patient/$export")
    assert {r["id"] for r in found if r["resourceType"] == "Patient"} == {"p1", "p2"}
    assert all(t["code"] == "org-a" for r in found for t in r["meta"]["tag"] if t["system"] == INSTITUTION_TAG)


def test_only_the_asking_client_polls_fetches_and_cancels(server: str, database: Database) -> None:
    seed(database)
    other = Principal("other-app", Role.APP, scope_ceiling(Role.APP))
    with export_worker(database, database.settings), fhir_client(server, APP) as client, \
            fhir_client(server, other) as stranger:
        status_url = kick_off(client)
        manifest = wait(client, status_url)
        file_url = manifest["output"][0]["url"]
        assert_outcome(stranger.get(status_url), 404)
        assert_outcome(stranger.get(file_url, headers={"Accept": "application/fhir+ndjson"}), 404)
        assert_outcome(stranger.delete(status_url), 404)
        assert_outcome(httpx.get(file_url), 401)
        with fhir_client(server, principal(Role.GOVERNANCE)) as governance:  # may read, may not bulk-export
            assert_outcome(governance.get("/$export", headers=ASYNC), 403)
        assert client.get(file_url).status_code == 200
        assert_outcome(client.get(file_url.rsplit("/", 1)[0] + "/..%2F..%2Fhub-test.db"), 404)
        assert client.delete(status_url).status_code == 202
        assert_outcome(client.get(status_url), 404)
        assert_outcome(client.get(file_url), 404)
    assert not any(Path(database.settings.export_dir).glob(f"{status_url.rsplit('/', 1)[1]}*"))


def test_a_cancelled_job_stops_and_leaves_nothing(database: Database) -> None:
    seed(database)
    jobs = ExportJobs(database, database.settings)
    job_id = jobs.kick_off(Access.unrestricted("export-app"), Kickoff("system", None, [], "http://hub/fhir/$export"))
    now = datetime.now(timezone.utc)
    with database.exports(write=True) as store:
        job = store.claim(now, now, now)
    assert job is not None and job.job_id == job_id
    jobs.cancel(job_id, "export-app")  # while it "runs"
    ExportRunner(database, database.settings, jobs.files).run(job)
    assert not jobs.files.job_dir(job_id).exists()
    with database.exports(write=False) as store:
        assert store.get(job_id) is None


def test_a_job_whose_process_died_is_taken_over_then_given_up(database: Database) -> None:
    seed(database)
    jobs = ExportJobs(database, database.settings)
    runner = ExportRunner(database, database.settings, jobs.files)
    started = datetime.now(timezone.utc)
    stale = timedelta(minutes=5)

    def claim(at: datetime) -> ExportJob | None:
        with database.exports(write=True) as store:
            return store.claim(at, at - stale, at + timedelta(hours=1))

    job_id = jobs.kick_off(Access.unrestricted("export-app"), Kickoff("system", None, [("_type", "Patient")], "u"))
    first = claim(started)  # its process hangs here: no heartbeat any more
    assert first is not None and claim(started + timedelta(minutes=1)) is None  # within its heartbeat's grace
    again = claim(started + timedelta(minutes=6))
    assert again is not None and again.job_id == job_id and again.attempts == 2
    runner.run(again)
    runner.run(first)  # the first run wakes up: it can no longer change the job, nor touch the new run's files
    done = jobs.job(job_id, "export-app")
    assert done.status == "completed" and done.attempts == 2
    assert len(b"".join(jobs.read_file(job_id, "Patient-1.ndjson", "export-app")).splitlines()) == 3
    doomed = jobs.kick_off(Access.unrestricted("export-app"), Kickoff("system", None, [], "u"))
    for minutes in (0, 6, 12):
        assert claim(started + timedelta(minutes=minutes)) is not None
    assert claim(started + timedelta(minutes=18)) is None
    failed = jobs.job(doomed, "export-app")
    assert failed.status == "failed" and "interrupted 3 times" in (failed.error or "")


def test_kick_off_refuses_what_it_cannot_do(server: str, database: Database) -> None:
    seed(database)
    with fhir_client(server, APP) as client:
        assert_outcome(client.get("/$export"), 400, contains="respond-async")
        cases = [
            ("/$export", {"_outputFormat": "application/fhir+xml"}, 400, "_outputFormat"),
            ("/$export", {"_type": "Nonsense"}, 400, "unknown resource type"),
            ("/$export", {"_since": "yesterday"}, 400, "_since"),
            ("/$export", {"_typeFilter": "Observation?colour=red"}, 400, "colour"),
            ("/$export", {"_typeFilter": "Observation?code=1", "_type": "Patient"}, 400, "_type does not ask"),
            ("/$export", {"_typeFilter": "Observation?_sort=date"}, 400, "criteria only"),
            ("/$export", {"patient": "Patient/p1"}, 400, "not supported"),
            ("/$export", {"colour": "red"}, 400, "colour"),
            ("/Patient/$export", {"_type": "Organization"}, 400, "not patient data"),
            ("/Group/no-such/$export", {}, 404, "Group/no-such"),
        ]
        for path, params, status, words in cases:
            assert_outcome(client.get(path, params=params, headers=ASYNC), status, contains=words)
        lenient = client.get("/$export", params={"colour": "red"},
                             headers={**ASYNC, "Prefer": "respond-async, handling=lenient"})
        assert lenient.status_code == 202
        for _ in range(4):  # five open jobs (nothing runs them here): the sixth waits
            assert client.get("/$export", headers=ASYNC).status_code == 202
        refused = client.get("/$export", headers=ASYNC)
        assert_outcome(refused, 429) and refused.headers["Retry-After"]
    with httpx.Client(base_url=f"{server}/fhir", headers=bearer(APP)) as raw:
        assert_outcome(raw.get("/$export-status/not-a-job"), 404)
        assert_outcome(raw.get("/$export-file/not-a-job/Patient-1.ndjson"), 404)
