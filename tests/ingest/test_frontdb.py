"""The front-end database (前置库) adapter end to end: real MariaDB and PostgreSQL over ODBC into the hub."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.frontdb.schema import ddl
from hub.fhir.repository import SearchSpec
from hub.ingest.fhir_build import resource_id
from hub.store.database import Database
from tests.ingest.conftest import (
    GOOD_ID,
    INSTITUTION,
    count,
    fill_labs,
    lab_rows,
    patient_row,
    register,
    run,
    versions,
)
from tests.ingest.sources import execute, insert_rows

ALL_KINDS_ROWS = {
    "hdr_encounter": [{"visit_id": "V1", "patient_id": "P0001", "visit_type_code": "3", "visit_time": "2025-01-01 09:00:00",
                       "discharge_time": None, "dept_code": "0301", "dept_name": "心内科", "doctor_code": "D01",
                       "doctor_name": "李医生", "update_time": "2025-01-01 09:00:00"}],
    "hdr_diagnosis": [{"diag_id": "G1", "patient_id": "P0001", "visit_id": "V1", "diag_code": "I10.x00",
                       "diag_name": "高血压", "diag_type": "1", "diag_time": "2025-01-01 09:30:00",
                       "update_time": "2025-01-01 09:30:00"}],
    "hdr_exam_report": [{"report_id": "E1", "patient_id": "P0001", "visit_id": "V1", "modality": "CT", "exam_code": "CT01",
                         "exam_name": "胸部CT平扫", "body_part": "胸部", "findings": "双肺纹理清晰", "impression": "未见异常",
                         "study_uid": "1.2.840.113619.2.55.3.1", "report_time": "2025-01-01 11:00:00",
                         "report_status": "final", "perform_org_code": None, "update_time": "2025-01-01 11:00:00"}],
    "hdr_medication_order": [{"order_id": "M1", "patient_id": "P0001", "visit_id": "V1", "drug_code": "X001",
                              "drug_name": "苯磺酸氨氯地平片", "dose": "5", "dose_unit": "mg", "route": "口服",
                              "frequency": "qd", "order_time": "2025-01-01 10:00:00", "order_status": "active",
                              "update_time": "2025-01-01 10:00:00"}],
    "hdr_referral": [{"referral_id": "F1", "patient_id": "P0001", "direction": "1", "from_org_code": INSTITUTION,
                      "to_org_code": "org-ks-1", "referral_time": "2025-01-03 10:00:00", "reason": "血压控制不佳",
                      "update_time": "2025-01-03 10:00:00"}],
    "hdr_chronic_followup": [{"followup_id": "S1", "patient_id": "P0001", "program_code": "1",
                              "visit_time": "2025-01-05 09:00:00", "visit_method": "2", "sbp": 150, "dbp": 95,
                              "fbg": 6.8, "update_time": "2025-01-05 09:00:00"}],
}


def _current(database: Database, resource_type: str) -> list[dict]:
    with database.unit_of_work(write=False) as repository:
        found = repository.search(SearchSpec(resource_type, count=1000))
    return [orjson.loads(stored.content or b"{}") for stored in found]


def test_published_ddl_files_are_the_generated_schema() -> None:
    directory = Path(__file__).resolve().parents[2] / "adapters" / "frontdb"
    for dialect in ("mariadb", "postgresql", "sqlserver", "sqlite"):
        assert (directory / f"{dialect}.sql").read_text(encoding="utf-8") == ddl(dialect), dialect


def test_every_record_kind_lands_as_valid_fhir(database: Database, institutions: None,
                                               frontdb: tuple[str, str]) -> None:
    server, connection = frontdb
    insert_rows(connection, "hdr_patient", [patient_row(1), patient_row(2)])
    fill_labs(connection, [lab_rows(1, 1, results=4)])
    for table, rows in ALL_KINDS_ROWS.items():
        insert_rows(connection, table, rows)
    source = register(database, f"front-{server[:5]}", "frontdb", connection)
    result = run(database, source)
    assert result.status == "succeeded", result.error
    assert result.counts.quarantined == 0
    # patients, visit, diagnosis, lab report + 4 results, exam report + study, order, referral, follow-up + 2 obs
    expected = {"Patient": 2, "Condition": 1, "DiagnosticReport": 2, "ImagingStudy": 1, "MedicationRequest": 1,
                "ServiceRequest": 1, "Encounter": 2, "Observation": 6}
    assert {t: count(database, t) for t in expected} == expected
    for resource_type in expected:
        for resource in _current(database, resource_type):
            get_fhir_model_class(resource_type).model_validate(resource)  # every stored resource is valid R4
            assert resource["meta"]["source"] == f"urn:hub:source:{source.source_id}"
            tags = {t["system"]: t["code"] for t in resource["meta"]["tag"]}
            assert tags["urn:hub:institution"] == INSTITUTION
            assert tags["urn:hub:adapter"] == "frontdb@1.0" and tags["urn:hub:mapping-version"] == "none"
    patient = next(p for p in _current(database, "Patient") if p["identifier"][0]["value"] == "P0001")
    assert patient["gender"] == "male" and patient["birthDate"] == "1949-12-31"
    assert patient["_gender"]["extension"][0]["valueCoding"]["code"] == "1"
    assert {"system": "urn:oid:2.16.156.10011.1.3", "value": GOOD_ID} == {
        k: v for k, v in patient["identifier"][-1].items() if k in ("system", "value")}
    inpatient = next(e for e in _current(database, "Encounter") if e["class"]["code"] == "IMP")
    assert inpatient["status"] == "in-progress" and inpatient["subject"]["reference"] == (
        f"Patient/{resource_id(INSTITUTION, 'Patient', 'P0001')}")
    report = next(r for r in _current(database, "DiagnosticReport") if r["category"][0]["coding"][0]["code"] == "LAB")
    assert len(report["result"]) == 4
    values = {o["code"]["coding"][0]["code"]: o for o in _current(database, "Observation")
              if o["code"]["coding"][0]["system"].endswith(":lab-item")}
    assert str(values["WBC"]["valueQuantity"]["value"]) == "6.5"
    assert values["WBC"]["referenceRange"][0]["low"]["value"] == 3.5
    assert values["PLT"]["valueQuantity"]["comparator"] == "<"
    assert values["UA"]["valueString"] == "阴性"
    assert values["HGB"]["interpretation"][0]["coding"][0]["code"] == "H"


def test_rerun_creates_no_duplicates_and_no_versions_and_picks_up_changes(
    database: Database, institutions: None, frontdb: tuple[str, str]
) -> None:
    server, connection = frontdb
    insert_rows(connection, "hdr_patient", [patient_row(n) for n in range(1, 8)])
    fill_labs(connection, [lab_rows(n, 1) for n in range(1, 5)])
    source = register(database, f"rerun-{server[:5]}", "frontdb", connection)
    first = run(database, source)
    assert (first.counts.records_read, first.counts.created) == (11, 7 + 4 * 4)
    assert run(database, source).counts.records_read == 0  # nothing changed since the watermark
    with database.ingest_state(write=True) as state:
        state.reset_positions(source.source_id)  # read everything again
    again = run(database, source)
    assert (again.counts.unchanged, again.counts.created, again.counts.updated) == (23, 0, 0)
    assert versions(database, "Patient") == 7 and versions(database, "Observation") == 12
    execute(connection, "UPDATE hdr_patient SET name = ?, update_time = ? WHERE patient_id = ?",
            "患者一改", "2025-06-01 00:00:00", "P0001")
    changed = run(database, source)
    assert (changed.counts.records_read, changed.counts.updated) == (1, 1)
    assert versions(database, "Patient") == 8 and count(database, "Patient") == 7


@pytest.mark.parametrize(("changes", "reason"), [
    ({"id_card_no": "1101051949123100"}, "18 characters"),
    ({"id_card_no": "110105194912310021"}, "check character"),
    ({"name": ""}, "name: required value is missing"),
    ({"sex_code": "5"}, "sex: '5' is not one of"),
])
def test_bad_rows_are_quarantined_while_good_rows_of_the_batch_land(
    database: Database, institutions: None, frontdb: tuple[str, str], changes: dict, reason: str
) -> None:
    server, connection = frontdb
    insert_rows(connection, "hdr_patient", [patient_row(1), patient_row(2, **changes), patient_row(3)])
    source = register(database, f"bad-{server[:5]}", "frontdb", connection)
    result = run(database, source)
    assert result.status == "succeeded"
    assert (result.counts.created, result.counts.quarantined) == (2, 1)
    with database.ingest_state(write=False) as state:
        (entry,) = state.entries(source.source_id)
        assert state.positions(source.source_id)["Patient"]["key"] == "P0003"  # the watermark moved past it
    assert entry["source_key"] == "P0002" and reason in entry["reason"]
    assert entry["raw"]["patient_id"] == "P0002" and entry["run_id"] == result.run_id
    assert "110105194912310021" not in entry["reason"]  # an ID number is never repeated in a reason
    # the source fixes the row: a rerun stores it and closes the quarantine entry
    fixed = {k: v for k, v in patient_row(2).items() if k != "patient_id"}
    fixed["update_time"] = "2025-02-01 00:00:00"
    execute(connection, "UPDATE hdr_patient SET " + ", ".join(f"{k} = ?" for k in fixed) + " WHERE patient_id = ?",
            *fixed.values(), "P0002")
    assert run(database, source).counts.created == 1
    with database.ingest_state(write=False) as state:
        assert state.entries(source.source_id) == []
        assert [e["status"] for e in state.entries(source.source_id, status=None)] == ["resolved"]


def test_a_lab_report_with_one_bad_result_is_quarantined_whole(database: Database, institutions: None,
                                                              frontdb: tuple[str, str]) -> None:
    server, connection = frontdb
    good, bad = lab_rows(1, 1), lab_rows(2, 1)
    bad[1][0]["abnormal_flag"] = "?"
    fill_labs(connection, [good, bad])
    source = register(database, f"labq-{server[:5]}", "frontdb", connection)
    result = run(database, source)
    assert (result.counts.created, result.counts.quarantined) == (4, 1)
    with database.ingest_state(write=False) as state:
        (entry,) = state.entries(source.source_id)
    assert entry["source_key"] == "R00002" and "results row 1: abnormal_flag" in entry["reason"]
    assert len(entry["raw"]["results"]) == 3  # the report is kept with every result row


def test_searching_what_was_ingested(database: Database, institutions: None, frontdb: tuple[str, str]) -> None:
    server, connection = frontdb
    insert_rows(connection, "hdr_patient", [patient_row(1)])
    fill_labs(connection, [lab_rows(1, 1), lab_rows(2, 1)])
    source = register(database, f"search-{server[:5]}", "frontdb", connection)
    run(database, source)
    with database.fhir_service(write=False) as service:
        found = service.search("Patient", [("identifier", f"urn:oid:2.16.156.10011.1.3|{GOOD_ID}")], "")
        entries = orjson.loads(orjson.dumps(found.body))["entry"]
        assert [e["resource"]["identifier"][0]["value"] for e in entries] == ["P0001"]
        patient_id = resource_id(INSTITUTION, "Patient", "P0001")
        labs = service.search("Observation", [("patient", patient_id), ("_total", "accurate"),
                                              ("code", f"urn:hub:code:{source.source_id}:lab-item|WBC")], "")
        assert labs.body["total"] == 2
