"""`hub demo --no-serve --patients 300`: the synthetic consortium goes through the whole hub, and what the hub
holds afterwards is what the generated source data implies — resources per source, quarantined rows, mapping
conflicts, EMPI links, a recognition check, CDS Hooks card and reading worklists — and a rerun changes nothing."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from hub.config import Settings
from hub.ingest.fhir_build import resource_id
from hub.store.database import Database
from hub.synthetic.consortium import BAD_BIRTH, BAD_SEX, BAD_VISIT_TIME, ID_MISTYPED, NO_PATIENT_ID
from hub.synthetic.vendors import UNMAPPED
from tests.conftest import running_server
from tests.test_cli import _run

PATIENTS = 300
pytestmark = pytest.mark.hub_database  # the demo runs on PostgreSQL too, in a database of its own


def _fresh_database(cwd: Path) -> str:
    """The demo's own new database: a SQLite file, or on the PostgreSQL of HUB_TEST_DATABASE_URL a database
    ``hub_demo_test`` created for it (the demo is the production path too)."""
    url = os.environ.get("HUB_TEST_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        return f"sqlite:///{cwd / 'hub.db'}"
    server = make_url(url)
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS hub_demo_test WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE hub_demo_test"))
    admin.dispose()
    return server.set(database="hub_demo_test").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cwd = tmp_path_factory.mktemp("demo")
    db_url = _fresh_database(cwd)
    run = _run(["demo", "--no-serve", "--patients", str(PATIENTS), "--seed", "11"], db_url, cwd)
    assert run.returncode == 0, run.stderr + run.stdout
    manifest = json.loads((cwd / "var" / "demo" / "manifest.json").read_text(encoding="utf-8"))
    return {"cwd": cwd, "url": db_url, "stdout": run.stdout, "stderr": run.stderr, "manifest": manifest}


def _rows(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [tuple(row) for row in connection.execute(text(sql), params)]
    engine.dispose()
    return rows


def _count(path: str, sql: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(sql).fetchone()[0])


def _quarantined(url: str) -> Counter[tuple[str, str]]:
    return Counter(_rows(url, "SELECT source_id, record_kind FROM hub_quarantine WHERE status = 'open'"))


def _expected(source: dict[str, Any], quarantined: Counter[tuple[str, str]]) -> Counter[str]:
    """The resources a source's rows imply, read from the source itself."""
    path, sid = source["path"], source["source_id"]
    out: Counter[str] = Counter()
    if source["adapter"] == "frontdb":
        out["Patient"] = _count(path, "SELECT count(*) FROM hdr_patient") - quarantined[(sid, "Patient")]
        out["Encounter"] = (_count(path, "SELECT count(*) FROM hdr_encounter") - quarantined[(sid, "Encounter")]
                            + _count(path, "SELECT count(*) FROM hdr_chronic_followup"))
        out["Condition"] = _count(path, "SELECT count(*) FROM hdr_diagnosis")
        out["DiagnosticReport"] = (_count(path, "SELECT count(*) FROM hdr_lab_report")
                                   + _count(path, "SELECT count(*) FROM hdr_exam_report"))
        out["ImagingStudy"] = _count(path, "SELECT count(*) FROM hdr_exam_report WHERE study_uid IS NOT NULL")
        out["Observation"] = (_count(path, "SELECT count(*) FROM hdr_lab_result")
                              + _count(path, "SELECT count(*) FROM hdr_chronic_followup WHERE sbp IS NOT NULL")
                              + _count(path, "SELECT count(*) FROM hdr_chronic_followup WHERE fbg IS NOT NULL"))
        out["ServiceRequest"] = _count(path, "SELECT count(*) FROM hdr_referral")
    elif source["adapter"] == "his-pinyin":
        out["Patient"] = _count(path, "SELECT count(*) FROM BRXXK") - quarantined[(sid, "Patient")]
        out["Encounter"] = _count(path, "SELECT count(*) FROM JZJLK")
        out["Condition"] = _count(path, "SELECT count(*) FROM ZDJLK")
    elif source["adapter"] == "lis-english":
        out["DiagnosticReport"] = _count(path, "SELECT count(*) FROM lab_report")
        out["Observation"] = _count(path, "SELECT count(*) FROM lab_result")
    else:  # the HL7 drop folder: every file was moved to processed/ once stored
        messages = [m for f in sorted(Path(path, "processed").glob("*.hl7"))
                    for m in f.read_bytes().decode("utf-8").split("MSH|")[1:]]
        stored = [m for m in messages if "\rPID|1||^" not in m]
        assert len(messages) - len(stored) == quarantined[(sid, "LabReport")]
        out["DiagnosticReport"] = len(stored)
        out["Observation"] = sum(m.count("\rOBX|") for m in stored)
    return +out


#: The field the hub's reason must name for each kind of dirty row the generator wrote.
FIELDS = {ID_MISTYPED: "id_number", BAD_BIRTH: "birth_date", BAD_SEX: "sex", BAD_VISIT_TIME: "start",
          NO_PATIENT_ID: "patient_key"}


def test_demo_stores_what_each_source_sent_and_quarantines_the_dirty_rows(demo: dict[str, Any]) -> None:
    assert "Demo ready" in demo["stdout"]
    manifest, url = demo["manifest"], demo["url"]
    assert len(manifest["sources"]) == 32  # 28 front-end databases, the pinyin HIS, English LIS and HL7 folder
    assert {s["adapter"] for s in manifest["sources"]} == {"frontdb", "his-pinyin", "lis-english", "hl7v2-drop"}
    quarantined = _quarantined(url)
    stored = Counter()
    source_of = "json_extract(content, '$.meta.source')" if url.startswith("sqlite") else \
        "CAST(content AS json) -> 'meta' ->> 'source'"
    for kind, source, n in _rows(url, f"SELECT resource_type, {source_of}, count(*) FROM hub_resource "
                                      "WHERE NOT deleted GROUP BY 1, 2"):
        stored[(source, kind)] = n
    for source in manifest["sources"]:
        found = Counter({kind: n for (where, kind), n in stored.items()
                         if where == f"urn:hub:source:{source['source_id']}"})
        assert found == _expected(source, quarantined), source["source_id"]
    # exactly the dirty rows the generator wrote wait in quarantine, each with a reason naming its field
    waiting = {(sid, kind, key): reason for sid, kind, key, reason in _rows(
        url, "SELECT source_id, record_kind, source_key, reason FROM hub_quarantine WHERE status = 'open'")}
    dirty = {(s["source_id"], kind, key): why for s in manifest["sources"] for kind, key, why in s["dirty"]}
    assert set(waiting) == set(dirty) and len(dirty) >= 8
    for row, why in dirty.items():
        assert waiting[row].startswith(FIELDS[why] + ":"), (row, waiting[row])
    assert {why for why in dirty.values()} == set(FIELDS)
    assert not any(re.search(r"\d{11}", reason) for reason in waiting.values())  # no ID or phone number in a reason
    # nor on the console: the demo prints counts and credentials, never a resident's number
    for line in (demo["stdout"] + demo["stderr"]).splitlines():
        assert not re.search(r"(?<![\w-])(\d{17}[\dX]|\d{15}|1[3-9]\d{9})(?![\w-])", line), line


def test_demo_conflicts_are_the_unmapped_codes_the_sources_sent(demo: dict[str, Any]) -> None:
    expected = set()
    for source in demo["manifest"]["sources"]:
        unmapped = UNMAPPED.get(source["style"], frozenset())
        for element, code, n in source["codes"]:
            if (element, code) in unmapped:
                expected.add((f"urn:hub:code:{source['source_id']}:{element}", code, n))
    assert len(expected) >= 10
    found = _rows(demo["url"], "SELECT kind, system, code, occurrences FROM hub_mapping_conflict WHERE status = 'open'")
    assert {row[0] for row in found} == {"unmapped"}
    assert {row[1:] for row in found} == expected


def test_demo_links_registrations_of_one_person_and_never_two(demo: dict[str, Any]) -> None:
    url, manifest = demo["url"], demo["manifest"]
    person = dict(_rows(url, "SELECT patient_id, person_id FROM hub_empi_record"))
    reviews = set(_rows(url, "SELECT patient_id, candidate_person FROM hub_empi_review WHERE status = 'open'"))
    label = {resource_id(org, "Patient", key): who for org, keys in manifest["labels"].items()
             for key, who in keys.items()}
    residents: dict[str, set[int]] = {}
    for patient, regional in person.items():
        if patient in label:
            residents.setdefault(regional, set()).add(label[patient])
    assert all(len(labels) == 1 for labels in residents.values())  # no two residents under one person
    linked = sum(1 for patient, regional in person.items() if patient in label) - len(residents)
    assert linked > PATIENTS // 4  # residents registered at several institutions are one person
    assert manifest["typo_pairs"]
    for lead_key, tcm_key in manifest["typo_pairs"]:  # the same person typed with a homophone, no ID number
        lead, tcm = resource_id("org-ks-1", "Patient", lead_key), resource_id("org-ks-tcm", "Patient", tcm_key)
        assert person[lead] == person[tcm] or (tcm, person[lead]) in reviews or (lead, person[tcm]) in reviews


def _token(url: str, pair: list[str]) -> dict[str, str]:
    response = httpx.post(f"{url}/auth/token", auth=tuple(pair), data={"grant_type": "client_credentials"}, timeout=60)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_demo_credentials_recognition_cds_and_worklists(demo: dict[str, Any]) -> None:
    cwd, manifest = demo["cwd"], demo["manifest"]
    clients = json.loads((cwd / "var" / "demo" / "credentials.json").read_text())
    assert set(clients) == {"admin", "app", "source-admin", "governance", "his", "reader"}
    settings = Settings(database_url=demo["url"], key_dir=str(cwd / "var" / "keys"))
    database = Database(settings)
    example = manifest["recent_labs"][0]
    try:
        with running_server(settings, database) as url:
            headers = {name: _token(url, pair) for name, pair in clients.items()}
            found = httpx.get(f"{url}/fhir/Patient", params={"identifier": f"urn:hub:mrn:{example['site']}|"
                                                              f"{example['patient']}"},
                              headers=headers["app"], timeout=60).json()
            assert found["total"] == 1
            found = httpx.get(f"{url}/fhir/Patient", params={"identifier": "320583196803120015"},  # 张伟, encrypted
                              headers=headers["app"], timeout=60).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == ["pat-1"], found
            # the English LIS's local HGB was normalized: found by its LOINC code, local coding kept beside it
            hgb = httpx.get(f"{url}/fhir/Observation", params={"code": "http://loinc.org|718-7", "_count": "5",
                                                                "_source": "urn:hub:source:demo-ks1-lis"},
                            headers=headers["app"], timeout=60).json()
            codings = [c["system"] for c in hgb["entry"][0]["resource"]["code"]["coding"]]
            assert "urn:hub:code:demo-ks1-lis:lab-item" in codings and "http://loinc.org" in codings
            # the resident's blood count of the lead hospital in the last two days can be recognized at home
            checked = httpx.post(f"{url}/recognition/check", timeout=60, headers=headers["his"], json={
                "patient": f"urn:hub:mrn:{example['site']}|{example['patient']}", "code": "http://loinc.org|718-7"})
            assert checked.status_code == 200, checked.text
            assert {r["institution"] for r in checked.json()["recognizable"]} == {"org-ks-1"}, checked.json()
            hook = json.loads((cwd / "var" / "demo" / "cds-order-sign.json").read_text(encoding="utf-8"))
            cards = httpx.post(f"{url}/cds-services/hr-order-sign", json=hook, headers=headers["his"],
                               timeout=60).json()["cards"]
            assert [c["indicator"] for c in cards] == ["warning"] and "昆山市第一人民医院" in cards[0]["summary"]
            # the reading centers' worklists hold exactly the exams the sites sent (and the demo's two)
            sent = Counter((site, modality) for site, exams in manifest["exams"].items() for _key, modality in exams)
            sent.update([("org-ks-chc-yushan", "DX"), ("org-ks-chc-yushan", "ECG")])
            listed: Counter[tuple[str, str]] = Counter()
            for center in ("ks-imaging", "ks-ecg"):
                response = httpx.get(f"{url}/telediagnosis/worklist", params={"center": center, "count": 1000},
                                     headers=headers["admin"], timeout=60)
                listed.update((t["site"], t["modality"]) for t in response.json()["tasks"])
            assert listed == sent and sum(sent.values()) > 10
            imaging = httpx.get(f"{url}/telediagnosis/worklist", params={"center": "ks-imaging"},
                                headers=headers["reader"], timeout=60)
            modalities = {t["modality"] for t in imaging.json()["tasks"]}
            assert imaging.status_code == 200 and modalities and modalities <= {"DX", "US", "CT", "MR", "CR", "MG"}
            assert httpx.get(f"{url}/telediagnosis/worklist", params={"center": "ks-ecg"}, headers=headers["reader"],
                             timeout=60).status_code == 403  # another center's
            ecg = httpx.get(f"{url}/telediagnosis/worklist", params={"center": "ks-ecg"}, headers=headers["admin"],
                            timeout=60).json()["tasks"]
            assert ecg[0]["focus"] == "ImagingStudy/img-demo-tele-ecg" and ecg[0]["priority"] == "stat"  # first
            # the printed example FHIR query answers with the app's credentials
            query = re.search(r"curl -s -H \"Authorization: Bearer \$TOKEN\" '(http://[^']+/fhir/[^']+)'",
                              demo["stdout"])
            assert query is not None, demo["stdout"]
            answer = httpx.get(url + query.group(1).split("8080", 1)[1], headers=headers["app"], timeout=60)
            assert answer.status_code == 200 and answer.json()["entry"], answer.text
    finally:
        database.dispose()


def test_demo_rerun_changes_nothing(demo: dict[str, Any]) -> None:
    url = demo["url"]
    versions = _rows(url, "SELECT count(*) FROM hub_resource_version")
    clients = _rows(url, "SELECT count(*) FROM hub_client")
    again = _run(["demo", "--no-serve", "--patients", str(PATIENTS), "--seed", "11"], url, demo["cwd"])
    assert again.returncode == 0, again.stderr
    assert "reused" in again.stdout and "as before" in again.stdout
    assert _rows(url, "SELECT count(*) FROM hub_resource_version") == versions
    assert _rows(url, "SELECT count(*) FROM hub_client") == clients
    other = _run(["demo", "--no-serve", "--patients", "400"], url, demo["cwd"])
    assert other.returncode == 2 and "--seed 11 --patients 300" in other.stderr
