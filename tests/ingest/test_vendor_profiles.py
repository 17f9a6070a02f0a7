"""Vendor profiles on real databases: a pinyin-named HIS on MariaDB, an English-named LIS on PostgreSQL,
and a new vendor added with a profile file alone (read through the SQLite ODBC driver)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyodbc

from hub.fhir.repository import SearchSpec
from hub.ingest.fhir_build import resource_id
from hub.store.database import Database
from tests.ingest.conftest import GOOD_ID, INSTITUTION, count, register, run
from tests.ingest.sources import create_database, insert_rows, run_script

HIS_TABLES = [
    "CREATE TABLE BRXXK (BRID VARCHAR(20) PRIMARY KEY, HZXM VARCHAR(50), SFZH VARCHAR(20), BRXB VARCHAR(4), "
    "CSRQ VARCHAR(8), HYZK VARCHAR(2), LXDH VARCHAR(20), JTZZ VARCHAR(200), BAH VARCHAR(20), XGSJ DATETIME NOT NULL)",
    "CREATE TABLE JZJLK (JZID VARCHAR(20) PRIMARY KEY, BRID VARCHAR(20), JZLX VARCHAR(4), JZSJ DATETIME, "
    "CYSJ DATETIME NULL, KSDM VARCHAR(10), KSMC VARCHAR(50), YSGH VARCHAR(10), YSXM VARCHAR(20), XGSJ DATETIME NOT NULL)",
    "CREATE TABLE ZDJLK (ZDID VARCHAR(20) PRIMARY KEY, BRID VARCHAR(20), JZID VARCHAR(20), ZDDM VARCHAR(20), "
    "ZDMC VARCHAR(100), ZDLB VARCHAR(2), ZDSJ DATETIME, XGSJ DATETIME NOT NULL)",
]
LIS_TABLES = [
    "CREATE TABLE lab_report (id INTEGER PRIMARY KEY, patient_no VARCHAR(20), visit_no VARCHAR(20), "
    "panel_code VARCHAR(20), panel_name VARCHAR(50), sample_type VARCHAR(20), sampled_at TIMESTAMP, "
    "reported_at TIMESTAMP, state VARCHAR(10), modified_at TIMESTAMP NOT NULL)",
    "CREATE TABLE lab_result (id INTEGER PRIMARY KEY, report_id INTEGER, item_code VARCHAR(20), "
    "item_name VARCHAR(50), result_value VARCHAR(20), unit VARCHAR(20), ref_range VARCHAR(30), flag VARCHAR(4))",
]


def _patient(brid: str, **changes: object) -> dict:
    row = {"BRID": brid, "HZXM": "\u3000王小明 ", "SFZH": GOOD_ID.lower(), "BRXB": "男", "CSRQ": "19491231",
           "HYZK": "1", "LXDH": "138-0013-8000", "JTZZ": "昆山市", "BAH": "BA" + brid, "XGSJ": "2025-03-01 08:00:00"}
    row.update(changes)
    return row


def test_pinyin_his_on_mariadb(database: Database, institutions: None) -> None:
    connection = create_database("mariadb", "hub_src_his_pinyin")
    run_script(connection, HIS_TABLES)
    insert_rows(connection, "BRXXK", [
        _patient("1001"), _patient("1002", BRXB="女", HZXM="李红", CSRQ="19800101", SFZH="440524188001010014",
                                   XGSJ="2025-03-01 08:00:01"),
        _patient("1003", CSRQ="19801345", XGSJ="2025-03-01 08:00:02"),  # not a date
        _patient("1004", BRXB="不详", XGSJ="2025-03-01 08:00:03"),      # not in the profile's sex map
    ])
    insert_rows(connection, "JZJLK", [{"JZID": "J1", "BRID": "1001", "JZLX": "门诊", "JZSJ": "2025-03-01 09:00:00",
                                       "CYSJ": None, "KSDM": "01", "KSMC": "内科", "YSGH": "007", "YSXM": "赵医生",
                                       "XGSJ": "2025-03-01 09:00:00"}])
    insert_rows(connection, "ZDJLK", [{"ZDID": "Z1", "BRID": "1001", "JZID": "J1", "ZDDM": "E11.900",
                                       "ZDMC": "2型糖尿病", "ZDLB": "主", "ZDSJ": "2025-03-01 09:10:00",
                                       "XGSJ": "2025-03-01 09:10:00"}])
    source = register(database, "his-pinyin", "his-pinyin", connection)
    result = run(database, source)
    assert result.status == "succeeded", result.error
    assert (result.counts.created, result.counts.quarantined) == (4, 2)
    with database.ingest_state(write=False) as state:
        reasons = {e["source_key"]: e["reason"] for e in state.entries(source.source_id)}
    assert "birth_date" in reasons["1003"] and "'不详' is not a known value of column brxb" in reasons["1004"]
    with database.unit_of_work(write=False) as repository:
        stored = repository.read_current("Patient", resource_id(INSTITUTION, "Patient", "1001"))
    patient = orjson.loads(stored.content or b"")
    assert patient["name"][0]["text"] == "王小明"  # the hook removed the full-width padding
    assert patient["identifier"][-1]["value"] == GOOD_ID  # the hook upper-cased the check character
    assert patient["telecom"][0]["value"] == "13800138000" and patient["gender"] == "male"
    assert patient["maritalStatus"]["coding"][0] == {"system": "urn:hub:code:his-pinyin:marital-status", "code": "1"}
    assert count(database, "Encounter") == 1 and count(database, "Condition") == 1


def test_english_lis_on_postgresql(database: Database, institutions: None) -> None:
    connection = create_database("postgresql", "hub_src_lis_english")
    run_script(connection, LIS_TABLES)
    insert_rows(connection, "lab_report", [
        {"id": n, "patient_no": "1001", "visit_no": None, "panel_code": "LIVER", "panel_name": "肝功能",
         "sample_type": "血清", "sampled_at": "2025-04-01 07:30:00", "reported_at": "2025-04-01 11:00:00",
         "state": state, "modified_at": f"2025-04-01 11:00:0{n}"} for n, state in ((1, "AUDITED"), (2, "PRELIM"))])
    insert_rows(connection, "lab_result", [
        {"id": 10 + n, "report_id": 1 + n // 2, "item_code": code, "item_name": name, "result_value": value,
         "unit": "U/L", "ref_range": "9-50", "flag": flag}
        for n, (code, name, value, flag) in enumerate([("ALT", "丙氨酸氨基转移酶", "88", "↑"),
                                                       ("AST", "天门冬氨酸氨基转移酶", "30", None),
                                                       ("ALT", "丙氨酸氨基转移酶", "8", "↓")])])
    source = register(database, "lis-english", "lis-english", connection)
    result = run(database, source)
    assert result.status == "succeeded", result.error
    assert (result.counts.created, result.counts.quarantined) == (5, 0)
    with database.unit_of_work(write=False) as repository:
        observations = [orjson.loads(s.content or b"") for s in repository.search(SearchSpec("Observation"))]
    flags = sorted((o["status"], o.get("interpretation", [{}])[0].get("coding", [{}])[0].get("code", "-"))
                   for o in observations)
    assert flags == [("final", "-"), ("final", "H"), ("preliminary", "L")]
    # the LIS refers to the HIS's patient number: the same Patient id as the HIS adapter gives it
    assert {o["subject"]["reference"] for o in observations} == {
        f"Patient/{resource_id(INSTITUTION, 'Patient', '1001')}"}


NEW_VENDOR = """
profile: clinic_emr
version: "0.9"
description: A township clinic's EMR (SQLite)
records:
  Patient:
    query: SELECT pid, full_name, gender, dob, mobile, changed FROM people
    key: pid
    updated: changed
    fields:
      name: full_name
      sex: {column: gender, map: {M: "1", F: "2"}}
      birth_date: dob
      phone: mobile
"""


def test_a_new_vendor_needs_only_a_profile_file(database: Database, institutions: None, tmp_path: Path) -> None:
    profile = tmp_path / "clinic_emr.yaml"
    profile.write_text(NEW_VENDOR, encoding="utf-8")
    source_db = tmp_path / "clinic.db"
    with pyodbc.connect(f"DRIVER={{SQLite3}};DATABASE={source_db}", autocommit=True) as raw:
        raw.execute("CREATE TABLE people (pid INTEGER PRIMARY KEY, full_name TEXT, gender TEXT, dob TEXT, "
                    "mobile TEXT, changed TEXT)")
        raw.execute("INSERT INTO people VALUES (1, '周一', 'M', '1970-05-06', '13912345678', '2025-01-01 00:00:00'), "
                    "(2, '吴二', 'F', '1975/7/8', NULL, '2025-01-01 00:00:01')")
    source = register(database, "clinic-emr", "sql-profile", f"DRIVER={{SQLite3}};DATABASE={source_db}",
                      options={"profile": str(profile)})
    assert source.adapter_version == "0.9"
    result = run(database, source)
    assert result.status == "succeeded", result.error
    assert result.counts.created == 2
    with database.unit_of_work(write=False) as repository:
        stored = repository.read_current("Patient", resource_id(INSTITUTION, "Patient", "2"))
    patient = orjson.loads(stored.content or b"")
    assert patient["birthDate"] == "1975-07-08" and patient["gender"] == "female"
    tags = {t["system"]: t["code"] for t in patient["meta"]["tag"]}
    assert tags["urn:hub:adapter"] == "clinic_emr@0.9"
