"""Every FHIR template validates against the R4B models, with every field and with only the required ones;
source values are parsed the way source systems write them; profiles are checked when loaded."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import yaml
from fhir.resources.R4B import get_fhir_model_class

from adapters.base import (
    ChronicFollowUpRecord,
    DiagnosisRecord,
    EncounterRecord,
    ExamReportRecord,
    LabReportRecord,
    LabResultRecord,
    MedicationOrderRecord,
    PatientRecord,
    Position,
    RecordProblem,
    ReferralRecord,
)
from adapters.fields import build_record, parse_date, parse_datetime
from adapters.sql.profile import ProfileError, load_profile, parse_profile
from hub.fhir.bindings import check_required_bindings
from hub.ingest.fhir_build import SourceContext, build_resources, resource_id

CTX = SourceContext("src-1", "org-ks-1", "frontdb", "1.0")
T = datetime(2025, 3, 1, 8, 30, tzinfo=timezone.utc)
FULL = [
    PatientRecord("P1", T, "张三", "1", date(1949, 12, 31), "11010519491231002X", "13800138000", "20", "01", "昆山",
                  "BA1"),
    EncounterRecord("V1", T, "P1", "inpatient", T, None, "0301", "心内科", "D1", "李医生"),
    DiagnosisRecord("G1", T, "P1", "I10.x00", "高血压", "V1", "secondary", T),
    LabReportRecord("R1", T, "P1", "血常规", T, "corrected", "CBC", "V1", "静脉血", T, "org-ks-2", (
        LabResultRecord("1", "WBC", "白细胞", "6.5", "10*9/L", "3.5-9.5", "N"),
        LabResultRecord("2", "PLT", "血小板", ">=400", "10*9/L", "125～350", "HH"),
        LabResultRecord("3", "UA", "尿酸定性", "阴性"))),
    ExamReportRecord("E1", T, "P1", "ECG", "常规心电图", T, "final", "ECG01", "V1", "胸前", "窦性心律", "正常心电图",
                     "1.2.3.4", "org-ks-2"),
    ExamReportRecord("E2", T, "P1", "PATH", "病理", T, "cancelled", study_uid="1.2.3.5"),
    MedicationOrderRecord("M1", T, "P1", "X1", "阿司匹林肠溶片", T, "V1", "100", "mg", "口服", "qd", "stopped"),
    ReferralRecord("F1", T, "P1", "down", "org-ks-1", "org-ks-chc-yushan", T, "康复期转社区"),
    ChronicFollowUpRecord("S1", T, "P1", "diabetes", T, "电话", 135, 85, 7.2),
]
MINIMAL = [
    PatientRecord("P2", None, "李四", "9"),
    EncounterRecord("V2", None, "P2", "checkup", T),
    DiagnosisRecord("G2", None, "P2", "E11.900", "2型糖尿病"),
    LabReportRecord("R2", None, "P2", "肝功能", T),
    ExamReportRecord("E3", None, "P2", "US", "腹部彩超", T),
    MedicationOrderRecord("M2", None, "P2", "X2", "二甲双胍", T),
    ReferralRecord("F2", None, "P2", "up", "org-ks-chc-yushan", "org-ks-1", T),
    ChronicFollowUpRecord("S2", None, "P2", "hypertension", T),
]


@pytest.mark.parametrize("record", FULL + MINIMAL, ids=lambda r: f"{type(r).__name__}-{r.key}")
def test_templates_are_valid_r4(record: object) -> None:
    built = build_resources(record, CTX)  # type: ignore[arg-type]
    assert built
    for resource_type, rid, resource in built:
        assert resource["resourceType"] == resource_type and len(rid) == 36
        get_fhir_model_class(resource_type).model_validate(resource)
        assert check_required_bindings(resource) == []
        assert resource["meta"]["source"] == "urn:hub:source:src-1"


def test_ids_are_deterministic_and_shared_by_an_institutions_systems() -> None:
    lab = build_resources(FULL[3], CTX)
    assert lab[0][1] == resource_id("src-1", "LabReport", "R1")
    other_system = SourceContext("src-2", "org-ks-1", "lis_english", "2.0")
    assert build_resources(FULL[3], other_system)[0][2]["subject"] == lab[0][2]["subject"]
    assert resource_id("a", "Patient", "1") != resource_id("b", "Patient", "1")


def test_values_are_kept_exactly() -> None:
    _report, wbc, plt, ua = build_resources(FULL[3], CTX)
    assert str(wbc[2]["valueQuantity"]["value"]) == "6.5" and wbc[2]["status"] == "corrected"
    assert plt[2]["valueQuantity"]["comparator"] == ">=" and plt[2]["referenceRange"][0]["high"]["value"] == 350
    assert ua[2]["valueString"] == "阴性" and "referenceRange" not in ua[2]
    assert wbc[2]["performer"] == [{"reference": "Organization/org-ks-2"}]


@pytest.mark.parametrize(("raw", "expected"), [
    ("2024-03-01", date(2024, 3, 1)), ("20240301", date(2024, 3, 1)), ("2024/3/1", date(2024, 3, 1)),
    ("2024.03.01", date(2024, 3, 1)), ("2024年3月1日", date(2024, 3, 1)), ("2024-03-01 08:00:00", date(2024, 3, 1)),
])
def test_dates_as_sources_write_them(raw: str, expected: date) -> None:
    assert parse_date(raw) == expected


def test_date_times_get_the_source_zone() -> None:
    assert parse_datetime("20240301083000").isoformat() == "2024-03-01T08:30:00+08:00"
    assert parse_datetime("2024-03-01 08:30").isoformat() == "2024-03-01T08:30:00+08:00"
    assert parse_datetime("202403010830+0000").isoformat() == "2024-03-01T08:30:00+00:00"


@pytest.mark.parametrize(("values", "reason"), [
    ({"name": "x", "sex": "1", "birth_date": "2024-02-30"}, "birth_date"),
    ({"name": "x", "sex": "M"}, "sex: 'M' is not one of"),
    ({"name": "NULL", "sex": "1"}, "name: required value is missing"),
    ({"name": "x", "sex": "1", "favourite": "y"}, "not fields of Patient"),
])
def test_bad_values_name_the_field(values: dict, reason: str) -> None:
    with pytest.raises(RecordProblem, match=reason):
        build_record("Patient", {"key": "1", "updated_at": None, **values})


def test_positions_round_trip_as_json() -> None:
    for position in (Position(datetime(2025, 1, 1, 8), 17), Position("20250101", "A1"), Position()):
        assert Position.from_json(yaml.safe_load(yaml.safe_dump(position.to_json()))) == position


def test_shipped_profiles_load() -> None:
    for name in ("frontdb", "his_pinyin", "lis_english"):
        assert load_profile(name).kinds


@pytest.mark.parametrize(("profile", "needle"), [
    ({"profile": "x", "version": "1"}, "'records' is required"),
    ({"profile": "x", "version": "1", "records": {"Visit": {}}}, "'Visit' is not a record kind"),
    ({"profile": "x", "version": "1", "records": {"Patient": {"query": "q", "key": "k", "updated": "u",
                                                               "fields": {"name": "n"}}}}, "sex"),
    ({"profile": "x", "version": "1", "records": {"Patient": {"query": "q", "key": "k", "updated": "u",
                                                               "fields": {"name": "n; DROP", "sex": "s"}}}},
     "plain column name"),
    ({"profile": "x", "version": "1", "hooks": "no.such.module", "records": {"Patient": {
        "query": "q", "key": "k", "updated": "u", "fields": {"name": "n", "sex": "s"}}}}, "cannot be imported"),
])
def test_profile_mistakes_are_named(profile: dict, needle: str) -> None:
    with pytest.raises(ProfileError, match=needle):
        parse_profile(profile)


def test_a_record_without_an_update_time() -> None:
    record = build_record("Patient", {"key": "1", "updated_at": "", "name": "王五", "sex": "2"})
    assert record.updated_at is None and record.name == "王五"  # type: ignore[attr-defined]
