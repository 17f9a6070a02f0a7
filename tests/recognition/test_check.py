"""The recognition check on a real database: the national rules' scenarios, one by one."""

from __future__ import annotations

import pytest

from hub.auth.roles import Role
from hub.coding.mapping_tables import read_csv
from hub.coding.terminology import PROCESS_CACHE
from hub.empi.engine import Engine
from hub.empi.operations import EmpiOperations
from hub.errors import BusinessRuleViolation, Forbidden, InvalidRequest
from hub.governance.tables import load_table
from hub.recognition.check import CheckRequest
from hub.recognition.service import Recognition
from hub.store.database import Database
from tests.auth.support import principal
from tests.empi.support import ZHANG_WEI_ID, person_of, read, run_empi, source_patient, store
from tests.recognition.support import (
    CATALOGUE,
    COMMUNITY_B,
    FAILED_LAB,
    HOSPITAL_A,
    LOINC,
    OTHER_CONSORTIUM,
    YEARS,
    ago,
    check,
    consortium,
    glucose,
    put,
    zhang_wei,
)


@pytest.fixture
def recognition(database: Database, terminology: None) -> Recognition:
    return consortium(database)


def reasons(entry: dict) -> list[str]:
    return [r["code"] for r in entry["reasons"]]


def test_a_result_of_hospital_a_is_recognized_for_an_order_at_community_center_b(
        database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=2)))

    result = check(recognition, f"Patient/{patient_b}")
    [found] = result.recognizable
    assert found["result"] == "Observation/glu-a" and found["institution"] == HOSPITAL_A
    assert found["institution_name"] == "昆山市第一人民医院" and found["hr"] is True
    assert found["value"] == 5.6 and found["unit"] == "mmol/L"
    assert result.not_recognizable == []
    # by the ID number, which only hospital A's and B's records hold, and by B's record number
    assert [e["result"] for e in check(recognition, f"urn:oid:2.16.156.10011.1.3|{ZHANG_WEI_ID}").recognizable] \
        == ["Observation/glu-a"]
    assert [e["result"] for e in check(recognition, f"urn:hub:mrn:{COMMUNITY_B}|B77").recognizable] \
        == ["Observation/glu-a"]


def test_a_result_past_the_items_validity_window_is_expired(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-old", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=8)))
    result = check(recognition, f"Patient/{patient_b}")
    assert result.recognizable == []
    [entry] = result.not_recognizable
    assert reasons(entry) == ["expired"] and "有效期 7 天" in entry["reasons"][0]["text"]
    # the same result was recognizable for an order placed a week ago
    assert check(recognition, f"Patient/{patient_b}", at=ago(days=5)).recognizable[0]["result"] \
        == "Observation/glu-old"


def test_a_lab_that_failed_its_quality_assessment_that_year_is_not_qualified(
        database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-tcm", f"{HOSPITAL_A}-1001", FAILED_LAB, 5.6, "mmol/L", ago(days=1)))
    [entry] = check(recognition, f"Patient/{patient_b}").not_recognizable
    assert reasons(entry) == ["not-qualified"] and entry["hr"] is False
    assert "HR" not in {t.get("code") for t in read(database, "Observation", "glu-tcm")["meta"]["tag"]}


def test_a_preliminary_result_is_not_recognized_and_carries_no_hr(database: Database,
                                                                  recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-pre", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(hours=3),
                          status="preliminary"))
    [entry] = check(recognition, f"Patient/{patient_b}").not_recognizable
    assert reasons(entry) == ["not-final"]
    assert "HR" not in {t.get("code") for t in read(database, "Observation", "glu-pre")["meta"]["tag"]}


def test_results_outside_the_consortium_are_out_of_scope(database: Database, recognition: Recognition) -> None:
    store(database, source_patient(OTHER_CONSORTIUM, "9", "张伟", id_number=ZHANG_WEI_ID))
    patient_b = zhang_wei(database)
    put(database, glucose("glu-far", f"{OTHER_CONSORTIUM}-9", OTHER_CONSORTIUM, 5.6, "mmol/L", ago(days=1)))
    [entry] = check(recognition, f"Patient/{patient_b}").not_recognizable
    assert reasons(entry) == ["out-of-scope"] and entry["hr"] is True


def test_glucose_in_mg_per_dl_is_offered_in_the_orderers_mmol_per_l(database: Database,
                                                                     recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-mg", f"{HOSPITAL_A}-1001", HOSPITAL_A, 100.9, "mg/dL", ago(days=1)))
    [found] = check(recognition, f"Patient/{patient_b}").recognizable  # the catalogue's unit: mmol/L
    assert (found["value"], found["unit"]) == (5.601, "mmol/L")  # 100.9 ÷ 18.016, four significant digits
    assert found["original"] == {"value": 100.9, "unit": "mg/dL"}
    [found] = check(recognition, f"Patient/{patient_b}", unit="mg/dL").recognizable
    assert (found["value"], found["unit"]) == (100.9, "mg/dL") and "original" not in found
    # a unit that is no concentration cannot be compared
    put(database, glucose("glu-bad", f"{HOSPITAL_A}-1001", HOSPITAL_A, 12, "U/L", ago(days=1)))
    bad = [e for e in check(recognition, f"Patient/{patient_b}").not_recognizable if e["result"] == "Observation/glu-bad"]
    assert [reasons(e) for e in bad] == [["unit-not-comparable"]]


def test_the_orderers_local_code_is_mapped_to_the_catalogue_item(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    csv = ("source_system,source_code,source_display,target_system,target_code\n"
           f"lab-item,XT,血糖,{LOINC},2345-7\n")
    load_table(database, PROCESS_CACHE, "chc-his", read_csv(csv, "chc-his"), actor="test")
    result = check(recognition, f"Patient/{patient_b}", "urn:hub:code:chc-his:lab-item|XT")
    assert result.item is not None and result.item.item_id == "glu"
    assert result.standard_code == f"{LOINC}|2345-7" and len(result.recognizable) == 1
    unmapped = check(recognition, f"Patient/{patient_b}", "urn:hub:code:chc-his:lab-item|NOPE")
    assert unmapped.item is None and "尚未映射" in unmapped.message


def test_merging_after_the_result_makes_it_recognized_and_unmerging_takes_it_back(
        database: Database, recognition: Recognition) -> None:
    # two records the engine cannot link (no shared number): two persons
    store(database, source_patient(HOSPITAL_A, "1001", "张伟", birth="1980-05-12"),
          source_patient(COMMUNITY_B, "B77", "张卫国", birth="1975-01-02"))
    run_empi(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    patient_b = f"{COMMUNITY_B}-B77"
    assert check(recognition, f"Patient/{patient_b}").recognizable == []

    operations = EmpiOperations(Engine(database))
    source, target = person_of(database, patient_b), person_of(database, f"{HOSPITAL_A}-1001")
    operations.merge(source, target, actor="test", reason="同一人")
    assert [e["result"] for e in check(recognition, f"Patient/{patient_b}").recognizable] == ["Observation/glu-a"]

    operations.unmerge(source, actor="test", reason="合并错误")
    assert check(recognition, f"Patient/{patient_b}").recognizable == []


def test_checks_are_recorded_for_the_figures(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    result = check(recognition, f"Patient/{patient_b}")
    row = recognition.check_record(result.check_id)
    assert row is not None and row["recognizable"] == 1 and row["item_id"] == "glu"
    assert row["institution"] == COMMUNITY_B and row["result_ref"] == "Observation/glu-a"
    assert row["price_fen"] == 500 and row["decision"] is None


def _ct_head(report_id: str, patient_id: str, performer: str, when: object) -> dict:
    return {"resourceType": "DiagnosticReport", "id": report_id, "status": "final",
            "meta": {"tag": [{"system": "urn:hub:institution", "code": performer}]},
            "category": [{"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]}],
            "code": {"coding": [{"system": "urn:hub:code:pacs:exam-item", "code": "CT001"},
                                {"system": "urn:hub:exam-item", "code": "CT-HEAD"}], "text": "头颅CT平扫"},
            "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": when.isoformat(),  # type: ignore[attr-defined]
            "performer": [{"reference": f"Organization/{performer}"}], "conclusion": "颅内未见明显异常。"}


def test_exams_are_recognized_by_hospital_level_region_wide(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, _ct_head("ct-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, ago(days=10)),
        _ct_head("ct-chc", patient_b, COMMUNITY_B, ago(days=3)))
    result = check(recognition, f"Patient/{patient_b}", "urn:hub:exam-item|CT-HEAD", institution=OTHER_CONSORTIUM)
    [found] = result.recognizable  # region-wide: another consortium's hospital may use it
    assert found["result"] == "DiagnosticReport/ct-a" and found["conclusion"] == "颅内未见明显异常。"
    [community] = result.not_recognizable  # a community center is below 二级
    assert community["result"] == "DiagnosticReport/ct-chc" and reasons(community) == ["not-qualified"]
    assert "HR" in {t.get("code") for t in read(database, "DiagnosticReport", "ct-a")["meta"]["tag"]}
    assert "HR" not in {t.get("code") for t in read(database, "DiagnosticReport", "ct-chc")["meta"]["tag"]}


def test_a_catalogue_change_remarks_stored_results(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, _ct_head("ct-chc", patient_b, COMMUNITY_B, ago(days=3)))
    assert "HR" not in {t.get("code") for t in read(database, "DiagnosticReport", "ct-chc")["meta"]["tag"]}
    catalogue = CATALOGUE.read_text(encoding="utf-8").replace(
        'code: "urn:hub:exam-item|CT-HEAD", validity: 30d, scope: region, qualification: "level:secondary"',
        'code: "urn:hub:exam-item|CT-HEAD", validity: 30d, scope: region, qualification: "level:chc"')
    outcome = recognition.load_catalogue(catalogue, "test")
    assert outcome["changed_items"] == 1 and outcome["remarked"] == {"examined": 1, "updated": 1}
    report = read(database, "DiagnosticReport", "ct-chc")
    assert "HR" in {t.get("code") for t in report["meta"]["tag"]} and report["meta"]["versionId"] == "2"
    # loading the same catalogue again changes nothing
    assert recognition.load_catalogue(catalogue, "test")["remarked"] == {"examined": 0, "updated": 0}


def test_an_institution_bound_client_names_its_own_patients_or_by_id_number(database: Database,
                                                                           recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))

    def bound(patient: str) -> list[str]:
        [result] = recognition.check([CheckRequest(patient, COMMUNITY_B, f"{LOINC}|2345-7", bound=True)], "test")
        return [e["result"] for e in result.recognizable]

    assert bound(f"Patient/{patient_b}") == bound(f"urn:hub:mrn:{COMMUNITY_B}|B77") == ["Observation/glu-a"]
    assert bound(f"urn:oid:2.16.156.10011.1.3|{ZHANG_WEI_ID}") == ["Observation/glu-a"]
    for foreign in (f"Patient/{HOSPITAL_A}-1001", f"urn:hub:mrn:{HOSPITAL_A}|1001"):
        with pytest.raises(Forbidden, match="own institution"):
            bound(foreign)


def test_an_identifier_naming_two_different_people_is_refused(database: Database, recognition: Recognition) -> None:
    # the same ID number at two hospitals, but decided to be two people: no results are mixed
    store(database, source_patient(HOSPITAL_A, "1001", "张伟", id_number=ZHANG_WEI_ID),
          source_patient(COMMUNITY_B, "B77", "张伟", id_number=ZHANG_WEI_ID))
    run_empi(database)
    operations = EmpiOperations(Engine(database))
    operations.unlink(f"{COMMUNITY_B}-B77", actor="test", reason="同号不同人")
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    with pytest.raises(BusinessRuleViolation, match="2 different people"):
        check(recognition, f"urn:oid:2.16.156.10011.1.3|{ZHANG_WEI_ID}")
    assert check(recognition, f"Patient/{COMMUNITY_B}-B77").recognizable == []


def test_hr_follows_the_owner_tag_department_and_local_year(database: Database, recognition: Recognition) -> None:
    zhang_wei(database)
    with database.fhir_service(write=True) as service:  # a department of hospital A
        service.update("Organization", "org-ks-1-lab", {"resourceType": "Organization", "id": "org-ks-1-lab",
                                                        "name": "检验科", "partOf": {"reference": f"Organization/{HOSPITAL_A}"}})
    by_department = glucose("glu-dept", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1))
    by_department["performer"] = [{"reference": "Organization/org-ks-1-lab"}]
    put(database, by_department)
    # a hospital's own client writes without performer or tag: the hub stamps its institution, then marks
    own = glucose("glu-own", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1))
    del own["performer"], own["meta"]
    access = principal(Role.SOURCE_ADMIN, institutions=(HOSPITAL_A,)).access(frozenset({HOSPITAL_A}),
                                                                          frozenset({HOSPITAL_A}))
    with database.fhir_service(write=True, access=access) as service:
        service.update("Observation", "glu-own", own)
    for result_id in ("glu-dept", "glu-own"):
        assert "HR" in {t.get("code") for t in read(database, "Observation", result_id)["meta"]["tag"]}


def test_results_dated_only_by_issued_are_remarked_when_their_eqa_changes(database: Database,
                                                                         recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    issued_only = glucose("glu-issued", patient_b, FAILED_LAB, 5.6, "mmol/L", ago(days=1))
    issued_only["issued"] = issued_only.pop("effectiveDateTime")
    put(database, issued_only)
    assert "HR" not in {t.get("code") for t in read(database, "Observation", "glu-issued")["meta"]["tag"]}
    outcome = recognition.save_eqa([{"institution": FAILED_LAB, "item": "glu", "year": year, "passed": True}
                                    for year in YEARS], "t")
    assert outcome["remarked"]["updated"] == 1
    assert "HR" in {t.get("code") for t in read(database, "Observation", "glu-issued")["meta"]["tag"]}


def test_values_of_results_the_orderer_may_not_use_are_withheld(database: Database,
                                                               recognition: Recognition) -> None:
    store(database, source_patient(OTHER_CONSORTIUM, "9", "张伟", id_number=ZHANG_WEI_ID))
    patient_b = zhang_wei(database)
    put(database, glucose("glu-far", f"{OTHER_CONSORTIUM}-9", OTHER_CONSORTIUM, 5.6, "mmol/L", ago(days=1)),
        glucose("glu-pre", f"{HOSPITAL_A}-1001", HOSPITAL_A, 6.6, "mmol/L", ago(hours=2), status="preliminary"))
    low = glucose("glu-low", f"{HOSPITAL_A}-1001", HOSPITAL_A, 1.1, "mmol/L", ago(hours=5))
    low["valueQuantity"]["comparator"] = "<"
    low["referenceRange"] = [{"text": "3.9-6.1"}]
    low["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                          "code": "L"}]}]
    put(database, low)
    result = check(recognition, f"Patient/{patient_b}")
    [found] = result.recognizable
    assert (found["comparator"], found["value"], found["reference_range"], found["interpretation"]) == (
        "<", 1.1, "3.9-6.1", "L")
    assert {e["result"]: "value" in e for e in result.not_recognizable} == {
        "Observation/glu-far": False, "Observation/glu-pre": False}


def test_bad_check_requests_are_refused(database: Database, recognition: Recognition) -> None:
    patient_b = zhang_wei(database)
    with pytest.raises(InvalidRequest, match="unit 'furlong'"):
        check(recognition, f"Patient/{patient_b}", unit="furlong")
    with pytest.raises(InvalidRequest, match="not of a consortium"):
        check(recognition, f"Patient/{patient_b}", institution="consortium-ks")
    with pytest.raises(InvalidRequest, match="system\\|code"):
        check(recognition, f"Patient/{patient_b}", "2345-7")


def test_a_level_change_is_followed_by_remarking(database: Database, recognition: Recognition) -> None:
    zhang_wei(database)
    put(database, _ct_head("ct-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, ago(days=3)))
    assert "HR" in {t.get("code") for t in read(database, "DiagnosticReport", "ct-a")["meta"]["tag"]}
    hospital = read(database, "Organization", HOSPITAL_A)
    hospital["type"] = [t for t in hospital["type"]
                        if t["coding"][0]["system"] != "urn:hub:institution-level"] + [
        {"coding": [{"system": "urn:hub:institution-level", "code": "primary"}]}]
    put(database, hospital)
    assert recognition.remark(level_rules_only=True)["remarked"]["updated"] == 1
    assert "HR" not in {t.get("code") for t in read(database, "DiagnosticReport", "ct-a")["meta"]["tag"]}


def test_a_patient_with_more_results_than_read_gets_the_newest(database: Database, recognition: Recognition,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    patient_b = zhang_wei(database)
    monkeypatch.setattr("hub.recognition.check.MAX_RESULTS", 3)
    put(database, *(glucose(f"glu-{days}", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.0 + days / 10, "mmol/L",
                            ago(days=days)) for days in (30, 25, 20, 15, 1)))
    result = check(recognition, f"Patient/{patient_b}")
    assert [e["result"] for e in result.recognizable] == ["Observation/glu-1"]
    assert [e["result"] for e in result.not_recognizable] == ["Observation/glu-15", "Observation/glu-20"]
