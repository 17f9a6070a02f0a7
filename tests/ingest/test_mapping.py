"""Normalization in the ingest pipeline and the conflicts it finds, from realistic rows of a real MariaDB
front-end database read over ODBC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from hub.coding.mapping_tables import read_csv
from hub.coding.normalizer import MAPPED_EXTENSION, ORIGINAL_EXTENSION
from hub.coding.terminology import PROCESS_CACHE
from hub.config import Settings
from hub.fhir.repository import SearchSpec
from hub.governance.tables import export_table, load_table
from hub.ingest.mapping import SourceNormalizers
from hub.store.conflicts import ConflictFilter
from hub.store.database import Database
from tests.ingest.conftest import INSTITUTION, fill_labs, lab_rows, patient_row, register, run
from tests.ingest.sources import insert_rows

pytestmark = pytest.mark.usefixtures("terminology", "institutions")
LOINC = "http://loinc.org"
ICD = "urn:oid:2.16.156.10011.2.3.3.11"
FRONTDB_TABLE = Path(__file__).resolve().parents[2] / "mappings" / "frontdb.csv"


def table(database: Database, scope: str, text: str) -> dict[str, Any]:
    return load_table(database, PROCESS_CACHE, scope, read_csv(text, scope), actor="test").as_dict()


def observations(database: Database) -> dict[str, dict[str, Any]]:
    with database.unit_of_work(write=False) as repository:
        found = repository.search(SearchSpec("Observation", count=1000))
    out = {}
    for stored in found:
        resource = orjson.loads(stored.content or b"{}")
        out[resource["code"]["coding"][0]["code"]] = resource
    return out


def conflicts(database: Database, **selection: Any) -> dict[tuple[str, str], dict[str, Any]]:
    with database.conflicts(write=False) as store:
        rows, _total = store.list(ConflictFilter(**selection), limit=500)
    return {(r["kind"], r["code"]): r for r in rows}


def lab(report: int, items: list[tuple[str, str, str, str | None, str | None]]) -> tuple[dict, list[dict]]:
    head, _rows = lab_rows(report, 1)
    rows = [{"result_id": f"{head['report_id']}-{n}", "report_id": head["report_id"], "item_code": code,
             "item_name": name, "result_value": value, "unit": unit, "ref_range": ref, "abnormal_flag": None}
            for n, (code, name, value, unit, ref) in enumerate(items)]
    return head, rows


def test_ingest_adds_standard_codes_converts_units_and_flags_what_tables_miss(
        database: Database, frontdb_mariadb: str) -> None:
    change = table(database, "frontdb", FRONTDB_TABLE.read_text(encoding="utf-8"))
    assert change["version"] == 1
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1, marital_status_code="2", nation_code="3")])
    fill_labs(frontdb_mariadb, [
        lab(1, [("WBC", "白细胞计数", "6.5", "10*9/L", "3.5-9.5"),
                 ("GLU", "葡萄糖", "100", "mg/dL", "70-110"),          # converted to mmol/L
                 ("TG", "甘油三酯", "1.9", "mmol/L", "0.56-1.7"),       # no row: unmapped
                 ("HGB", "血红蛋白浓度", "150", "g/L", "130-175"),      # the table says 血红蛋白: display drift
                 ("CREA", "肌酐", "1.1", "kat/L", None),                # a unit nobody can convert
                 ("QC", "质控品", "1", None, None)]),                   # mapped as unmatched: not flagged
        lab(2, [("TG", "甘油三酯", "2.3", "mmol/L", "0.56-1.7")]),
    ])
    insert_rows(frontdb_mariadb, "hdr_diagnosis", [
        {"diag_id": "G1", "patient_id": "P0001", "visit_id": None, "diag_code": "I10.x00", "diag_name": "原发性高血压",
         "diag_type": "1", "diag_time": "2025-01-01 09:30:00", "update_time": "2025-01-01 09:30:00"}])
    source = register(database, "yushan-front", "frontdb", frontdb_mariadb)
    result = run(database, source)
    assert result.status == "succeeded", result.error

    stored = observations(database)
    wbc = stored["WBC"]["code"]["coding"]
    assert wbc[0]["system"] == "urn:hub:code:yushan-front:lab-item"  # the local coding stays first
    assert {"system": LOINC, "code": "6690-2"}.items() <= wbc[1].items()
    assert wbc[1]["extension"][0] == {"url": MAPPED_EXTENSION, "valueUri": "urn:hub:mapping:frontdb|1"}
    glucose = stored["GLU"]["valueQuantity"]
    assert (str(glucose["value"]), glucose["code"], glucose["system"]) == ("5.551", "mmol/L", "http://unitsofmeasure.org")
    assert glucose["extension"][0]["url"] == ORIGINAL_EXTENSION
    assert glucose["extension"][0]["valueQuantity"]["unit"] == "mg/dL"
    assert str(stored["GLU"]["referenceRange"][0]["high"]["value"]) == "6.106"
    assert stored["GLU"]["meta"]["tag"][-1] == {"system": "urn:hub:mapping-version", "code": "frontdb@1"}
    assert len(stored["TG"]["code"]["coding"]) == 1  # unmapped: the local code only
    assert len(stored["QC"]["code"]["coding"]) == 1

    with database.unit_of_work(write=False) as repository:
        condition = orjson.loads(repository.search(SearchSpec("Condition", count=5))[0].content or b"{}")
        patient = orjson.loads(repository.search(SearchSpec("Patient", count=5))[0].content or b"{}")
    assert {"system": ICD, "code": "I10.x00", "display": "特发性(原发性)高血压"}.items() <= condition["code"]["coding"][1].items()
    assert patient["maritalStatus"]["coding"][1]["code"] == "20"  # local 2 → GB/T 2261.2 已婚
    ethnicity = patient["extension"][0]["valueCodeableConcept"]["coding"]
    assert ethnicity[1]["code"] == "03" and ethnicity[1]["display"] == "回族"  # unpadded 3 accepted

    found = conflicts(database)
    unmapped = found[("unmapped", "TG")]
    assert unmapped["occurrences"] == 2 and unmapped["display"] == "甘油三酯"
    assert set(unmapped["samples"]) == {"1.9 mmol/L", "2.3 mmol/L"}
    assert unmapped["sources"] == ["yushan-front"] and unmapped["institutions"] == [INSTITUTION]
    assert unmapped["first_seen"] and unmapped["last_seen"]
    drift = found[("display-drift", "HGB")]
    assert drift["display"] == "血红蛋白浓度"
    assert found[("unit", "CREA")]["detail"] == "kat/L"
    assert ("unmapped", "QC") not in found and ("unmapped", "WBC") not in found

    # a rerun of unchanged rows adds no versions but keeps counting occurrences
    again = run(database, source)
    assert again.counts.created == again.counts.updated == 0


def test_table_conflicts_ambiguous_invalid_and_inconsistent(database: Database, frontdb_mariadb: str) -> None:
    source = register(database, "lis-a", "frontdb", frontdb_mariadb)
    table(database, "lis-a", "source_system,source_code,source_display,target_system,target_code\n"
                              f"lab-item,GLU,葡萄糖,{LOINC},14749-6\n"
                              f"lab-item,GLU,葡萄糖,{LOINC},2345-7\n"          # two active targets: ambiguous
                              f"diagnosis,HT,高血压,{ICD},I10.x99\n"           # not in ICD-10 国家临床版
                              f"diagnosis,DM,糖尿病,{ICD},E10-E14\n")          # a block, not a diagnosis
    table(database, "lis-b", "source_system,source_code,source_display,target_system,target_code\n"
                              f"lab-item,G01,葡萄糖,{LOINC},14771-0\n"
                              f"lab-item,G02,血红蛋白,{LOINC},718-7\n")
    table(database, "lis-c", "source_system,source_code,source_display,target_system,target_code\n"
                              f"lab-item,X9,血红蛋白,{LOINC},718-7\n")          # same text, same target: fine
    found = conflicts(database)
    ambiguous = found[("ambiguous", "GLU")]
    assert ambiguous["info"]["targets"] == [f"{LOINC}|14749-6", f"{LOINC}|2345-7"]
    assert ambiguous["sources"] == ["lis-a"] and ambiguous["institutions"] == [INSTITUTION]
    assert "不在" in found[("invalid-target", "HT")]["info"]["problem"]
    assert "分类节点" in found[("invalid-target", "DM")]["info"]["problem"]
    inconsistent = [c for (kind, _code), c in found.items() if kind == "inconsistent"]
    assert len(inconsistent) == 1 and inconsistent[0]["display"] == "葡萄糖"
    assert {m["scope"] for m in inconsistent[0]["info"]["mappings"]} >= {"lis-a", "lis-b"}

    # ingesting the ambiguous code counts occurrences and adds no standard coding
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("GLU", "葡萄糖", "5.2", "mmol/L", None)])])
    assert run(database, source).status == "succeeded"
    assert len(observations(database)["GLU"]["code"]["coding"]) == 1
    assert conflicts(database)[("ambiguous", "GLU")]["occurrences"] == 1

    # fixing the table resolves the conflicts it no longer has
    table(database, "lis-a", "source_system,source_code,source_display,target_system,target_code\n"
                              f"lab-item,GLU,葡萄糖,{LOINC},14771-0\n")
    after = conflicts(database, status="resolved")
    assert {("ambiguous", "GLU"), ("invalid-target", "HT"), ("invalid-target", "DM")} <= set(after)
    assert not [k for k in conflicts(database) if k[0] in ("ambiguous", "inconsistent", "invalid-target")]


def test_a_table_changed_by_another_process_reaches_a_running_normalizer(database: Database,
                                                                         settings: Settings) -> None:
    source = register(database, "front-x", "frontdb", "DSN=unused")
    normalizers = SourceNormalizers(database, source)
    assert normalizers.current().version == "none"
    other = Database(settings)  # another process's connection pool and caches
    try:
        table(other, "frontdb", FRONTDB_TABLE.read_text(encoding="utf-8"))
    finally:
        other.dispose()
    assert normalizers.current().version == "frontdb@1"


def test_renormalize_a_scope_finishes_what_an_interrupted_run_left(database: Database, frontdb_mariadb: str) -> None:
    from hub.governance.tables import renormalize_scope, write_table

    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("WBC", "白细胞计数", "6.5", "10*9/L", None)])])
    source = register(database, "front-r", "frontdb", frontdb_mariadb)
    assert run(database, source).status == "succeeded"
    rows = read_csv(FRONTDB_TABLE.read_text(encoding="utf-8"), "frontdb")
    with database.fhir_service(write=True) as service:  # the table changed, the follow-up never ran
        write_table(service, PROCESS_CACHE, "frontdb", lambda _old: rows)
    assert len(observations(database)["WBC"]["code"]["coding"]) == 1
    done = renormalize_scope(database, PROCESS_CACHE, "frontdb", actor="test")
    assert done.updated == 3  # the result, its report (血常规 → 58410-2), the patient (now tagged frontdb@1)
    assert observations(database)["WBC"]["code"]["coding"][1]["code"] == "6690-2"
    assert renormalize_scope(database, PROCESS_CACHE, "frontdb", actor="test").updated == 0  # idempotent


def test_a_unit_conflict_marked_not_applicable_keeps_the_target_without_conversion(
        database: Database, frontdb_mariadb: str) -> None:
    from hub.governance.review import Decision, decide

    table(database, "frontdb", FRONTDB_TABLE.read_text(encoding="utf-8"))
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("CREA", "肌酐", "1.1", "kat/L", None)])])
    source = register(database, "front-u", "frontdb", frontdb_mariadb)
    assert run(database, source).status == "succeeded"
    unit = conflicts(database)[("unit", "CREA")]
    decide(database, PROCESS_CACHE, unit["id"], Decision("not-applicable", unit["version"], "tester", "该院肌酐单位特殊"))
    rows = {r.source_code: r for r in export_table(database, PROCESS_CACHE, "front-u")}
    assert rows["CREA"].target_code == "14682-9" and rows["CREA"].target_unit == ""
    fill_labs(frontdb_mariadb, [lab(2, [("CREA", "肌酐", "1.3", "kat/L", None)])])
    assert run(database, source).status == "succeeded"
    after = conflicts(database, status="not-applicable")[("unit", "CREA")]
    assert after["occurrences"] == 1  # no longer flagged
    creatinine = [o for o in observations(database).values() if o["code"]["coding"][0]["code"] == "CREA"][0]
    assert creatinine["code"]["coding"][1]["code"] == "14682-9" and creatinine["valueQuantity"]["unit"] == "kat/L"


def test_review_fixes_disjoint_huge_values_ambiguity_and_masked_drift(database: Database, frontdb_mariadb: str) -> None:
    from hub.governance.review import Decision, decide

    table(database, "frontdb", "source_system,source_code,source_display,target_system,target_code,equivalence,"
                               "target_unit\n"
                               f"lab-item,GLU,葡萄糖,{LOINC},14749-6,equivalent,canonical\n"
                               f"lab-item,NOTX,某项目,{LOINC},2345-7,disjoint,\n"        # explicitly not 2345-7
                               f"lab-item,AMB,某物,{LOINC},718-7,equivalent,\n"
                               f"lab-item,AMB,某物,{LOINC},6690-2,equivalent,\n"
                               f"lab-item,HGB,血红蛋白,{LOINC},718-7,equivalent,\n")
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("NOTX", "某项目", "1", None, None),
                                        ("GLU", "葡萄糖", "1" + "0" * 40, "mg/dL", None),   # beyond any precision
                                        ("AMB", "某物", "2", None, None),
                                        ("HGB", "血红蛋白 患者身份证11010519491231002X", "150", "g/L", None)])])
    source = register(database, "front-z", "frontdb", frontdb_mariadb)
    result = run(database, source)
    assert result.status == "succeeded" and result.counts.quarantined == 0
    stored = observations(database)
    assert len(stored["NOTX"]["code"]["coding"]) == 1  # disjoint adds nothing
    assert stored["GLU"]["valueQuantity"]["unit"] == "mg/dL"  # left as sent, flagged
    found = conflicts(database)
    assert found[("unit", "GLU")]["detail"] == "mg/dL"
    ambiguous = found[("ambiguous", "AMB")]
    assert ambiguous["system"] == "urn:hub:code:frontdb:lab-item"  # the table's conflict, counted by ingest
    assert ambiguous["occurrences"] == 1 and ambiguous["sources"] == ["front-z"]
    drift = found[("display-drift", "HGB")]
    assert drift["detail"].startswith("display:") and "11010519491231002" not in str(drift)
    # another table change keeps the ambiguity open (it is still there)
    table(database, "lis-other", f"source_system,source_code,target_system,target_code\nlab-item,X,{LOINC},718-7\n")
    assert conflicts(database)[("ambiguous", "AMB")]["status"] == "open"
    # a decision may only write the tables the code is looked up in
    with pytest.raises(Exception, match="table of"):
        decide(database, PROCESS_CACHE, drift["id"], Decision("approve", drift["version"], "t", "r",
                                                              {"system": LOINC, "code": "718-7"}, scope="lis-other"))
    decide(database, PROCESS_CACHE, drift["id"], Decision("approve", drift["version"], "t", "r",
                                                          {"system": LOINC, "code": "718-7"}, scope="frontdb"))
    hgb = [r for r in export_table(database, PROCESS_CACHE, "frontdb") if r.source_code == "HGB"]
    assert [(r.target_code, r.status) for r in hgb] == [("718-7", "active")]
