"""The governance review of mapping conflicts over HTTP: decide, stored data follows, optimistic locking."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.store.database import Database
from tests.auth.audit_support import empty_trail, events_of  # noqa: F401  (empty_trail is a fixture)
from tests.conftest import bearer
from tests.ingest.conftest import fill_labs, patient_row, register, run
from tests.ingest.sources import insert_rows
from tests.ingest.test_mapping import FRONTDB_TABLE, LOINC, lab, table

pytestmark = pytest.mark.usefixtures("terminology", "institutions")
REVIEWER = Principal("reviewer-1", Role.GOVERNANCE, {"*": frozenset("rs")})
OTHER_REVIEWER = Principal("reviewer-2", Role.GOVERNANCE, {"*": frozenset("rs")})


@pytest.fixture
def review(server: str) -> httpx.Client:
    with httpx.Client(base_url=server, headers=bearer(REVIEWER), timeout=60) as client:
        yield client


@pytest.fixture
def ingested(database: Database, frontdb_mariadb: str) -> str:
    """The frontdb table loaded and two sources' labs ingested, with TG unmapped in both."""
    table(database, "frontdb", FRONTDB_TABLE.read_text(encoding="utf-8"))
    insert_rows(frontdb_mariadb, "hdr_patient", [patient_row(1)])
    fill_labs(frontdb_mariadb, [lab(1, [("TG", "甘油三酯", "1.9", "mmol/L", None), ("GLU", "葡萄糖", "5.0", "mmol/L", None)]),
                                lab(2, [("TG", "甘油三酯", "2.4", "mmol/L", None)]),
                                lab(3, [("ZZ9", "某本地项目", "3", None, None)])])
    source = register(database, "yushan-front", "frontdb", frontdb_mariadb)
    assert run(database, source).status == "succeeded"
    return source.source_id


def _conflict(review: httpx.Client, code: str, **params: str) -> dict[str, Any]:
    items = review.get("/governance/conflicts", params={"q": code, **params}).json()["items"]
    return next(c for c in items if c["code"] == code)


def test_list_filters_sorts_and_shows_occurrences(review: httpx.Client, ingested: str) -> None:
    page = review.get("/governance/conflicts", params={"kind": "unmapped", "sort": "-occurrences"}).json()
    assert page["total"] == 2
    assert [c["code"] for c in page["items"]] == ["TG", "ZZ9"]
    assert page["items"][0]["occurrences"] == 2 and page["items"][0]["sources"] == [ingested]
    assert page["names"]["org-ingest-a"] == "测试医院甲"  # institutions named for the reviewer
    assert review.get("/governance/conflicts", params={"source": "elsewhere"}).json()["total"] == 0
    assert review.get("/governance/conflicts", params={"sort": "bogus"}).status_code == 400


def test_open_conflict_ranks_the_right_standard_code_first(review: httpx.Client, ingested: str) -> None:
    conflict = review.get(f"/governance/conflicts/{_conflict(review, 'TG')['id']}").json()
    best = conflict["suggestions"][0]
    assert (best["system"], best["code"]) == (LOINC, "14927-8")  # 甘油三酯
    assert best["score"] >= 0.9
    assert review.get("/governance/conflicts/999999").status_code == 404


def test_approve_renormalizes_stored_data_found_by_standard_code(review: httpx.Client, fhir: httpx.Client,
                                                                  ingested: str) -> None:
    assert fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json().get("total", 0) == 0
    conflict = _conflict(review, "TG")
    response = review.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
        "action": "approve", "version": conflict["version"], "reason": "甘油三酯即 TG",
        "target": {"system": LOINC, "code": "14927-8"}})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["conflict"]["status"] == "approved" and result["conflict"]["decided_by"] == "client:reviewer-1"
    renormalized = result["tables"][0]["renormalized"]
    assert renormalized["updated"] == 2 and renormalized["provenance"]
    assert result["tables"][0] == {**result["tables"][0], "scope": ingested, "version": 1}

    found = fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json()
    assert found["total"] == 2
    observation = found["entry"][0]["resource"]
    assert observation["meta"]["versionId"] == "2"
    assert f"{ingested}@1" in observation["meta"]["tag"][-1]["code"]
    provenance = fhir.get(f"/Provenance/{renormalized['provenance'][0]}").json()
    assert len(provenance["target"]) == 2 and provenance["reason"][0]["text"].endswith("甘油三酯即 TG")
    assert provenance["agent"][0]["who"]["display"] == "client:reviewer-1"

    detail = review.get(f"/governance/conflicts/{conflict['id']}").json()
    assert detail["decisions"][0]["reviewer"] == "client:reviewer-1"
    assert detail["decisions"][0]["reason"] == "甘油三酯即 TG"
    assert detail["decisions"][0]["result"]["tables"][0]["renormalized"]["updated"] == 2
    exported = review.get(f"/governance/mappings/{ingested}")
    assert "lab-item,TG,甘油三酯,http://loinc.org,14927-8" in exported.text


@pytest.mark.usefixtures("empty_trail")
def test_decisions_are_in_the_audit_trail(review: httpx.Client, database: Database, ingested: str) -> None:
    conflict = _conflict(review, "ZZ9")
    review.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
        "action": "not-applicable", "version": conflict["version"], "reason": "本地项目"})
    _listed, decided = events_of(database, REVIEWER.client_id, 2)  # the list and the decision
    assert decided["entity"][0]["description"] == f"POST /governance/conflicts/{conflict['id']}/$decide"
    assert decided["outcome"] == "0"


def test_two_reviewers_on_one_conflict_one_wins_the_other_gets_409(server: str, review: httpx.Client,
                                                                    ingested: str) -> None:
    conflict = _conflict(review, "ZZ9")
    outcomes: list[int] = []

    def decide(principal: Principal, action: str) -> None:
        with httpx.Client(base_url=server, headers=bearer(principal), timeout=60) as client:
            outcomes.append(client.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
                "action": action, "version": conflict["version"], "reason": f"{principal.client_id} 的决定"}).status_code)

    threads = [threading.Thread(target=decide, args=(REVIEWER, "not-applicable")),
               threading.Thread(target=decide, args=(OTHER_REVIEWER, "reject"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [200, 409]
    detail = review.get(f"/governance/conflicts/{conflict['id']}").json()
    assert len(detail["decisions"]) == 1  # the loser changed nothing
    stale = review.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
        "action": "reject", "version": conflict["version"], "reason": "过期的页面"})
    assert stale.status_code == 409 and "version" in stale.json()["issue"][0]["diagnostics"]


def test_not_applicable_writes_an_unmatched_row_and_reject_changes_no_table(review: httpx.Client,
                                                                             ingested: str) -> None:
    zz9 = _conflict(review, "ZZ9")
    done = review.post(f"/governance/conflicts/{zz9['id']}/$decide", json={
        "action": "not-applicable", "version": zz9["version"], "reason": "本地管理项目"}).json()
    assert done["conflict"]["status"] == "not-applicable"
    assert "lab-item,ZZ9,某本地项目,,,,unmatched" in review.get(f"/governance/mappings/{ingested}").text
    tg = _conflict(review, "TG")
    rejected = review.post(f"/governance/conflicts/{tg['id']}/$decide", json={
        "action": "reject", "version": tg["version"], "reason": "暂不映射"}).json()
    assert rejected["conflict"]["status"] == "rejected" and rejected["tables"] == []


def test_bad_decisions_are_clear_400s(review: httpx.Client, ingested: str) -> None:
    tg = _conflict(review, "TG")
    url = f"/governance/conflicts/{tg['id']}/$decide"
    invalid = review.post(url, json={"action": "approve", "version": tg["version"], "reason": "x",
                                     "target": {"system": LOINC, "code": "99999-9"}})
    assert invalid.status_code == 400 and "99999-9" in invalid.json()["issue"][0]["diagnostics"]
    assert review.post(url, json={"action": "approve", "version": tg["version"], "reason": "x"}).status_code == 400
    assert review.post(url, json={"action": "merge", "version": tg["version"], "reason": "x"}).status_code == 400
    assert review.post(url, json={"action": "reject", "version": tg["version"], "reason": ""}).status_code in (400, 422)
    assert _conflict(review, "TG")["status"] == "open"  # nothing happened


def test_bulk_approve_by_filter(review: httpx.Client, fhir: httpx.Client, ingested: str) -> None:
    result = review.post("/governance/conflicts/$bulk-approve", json={"kind": "unmapped", "reason": "批量确认"}).json()
    assert [a["target"]["code"] for a in result["approved"]] == ["14927-8"]  # TG; ZZ9 has no trustworthy match
    assert [s["id"] for s in result["skipped"]] == [_conflict(review, "ZZ9")["id"]]
    assert result["tables"][0]["renormalized"]["updated"] == 2
    assert fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json()["total"] == 2


def test_mapping_tables_over_http_and_who_may_review(server: str, review: httpx.Client, ingested: str) -> None:
    bad = review.put("/governance/mappings/frontdb", content="source_system,source_code,equivalence\nlab-item,X,same\n")
    assert bad.status_code == 400 and "Line 2" in bad.json()["issue"][0]["diagnostics"]
    loaded = review.put("/governance/mappings/frontdb",
                        content=FRONTDB_TABLE.read_text(encoding="utf-8") + f"lab-item,TG,甘油三酯,{LOINC},14927-8,,,,,\n")
    assert loaded.status_code == 200 and loaded.json()["version"] == 2
    assert loaded.json()["renormalized"]["updated"] == 2
    app = Principal("some-app", Role.APP, {"*": frozenset("rs")})
    with httpx.Client(base_url=server, headers=bearer(app), timeout=30) as client:
        assert client.get("/governance/conflicts").status_code == 403
    assert httpx.get(f"{server}/governance/conflicts").status_code == 401


def test_large_decisions_renormalize_in_the_background(review: httpx.Client, fhir: httpx.Client, ingested: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import hub.api.governance_routes as routes

    monkeypatch.setattr(routes, "SYNC_RENORMALIZE", 1)  # TG is on two stored results: more than one
    conflict = _conflict(review, "TG")
    answer = review.post(f"/governance/conflicts/{conflict['id']}/$decide", json={
        "action": "approve", "version": conflict["version"], "reason": "后台重新标准化",
        "target": {"system": LOINC, "code": "14927-8"}}).json()
    assert answer["renormalization"] == "running" and answer["conflict"]["status"] == "approved"
    deadline = time.monotonic() + 30
    while True:
        history = review.get(f"/governance/conflicts/{conflict['id']}").json()["decisions"]
        if history[0]["result"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert history[0]["result"]["tables"][0]["renormalized"]["updated"] == 2
    assert fhir.get("/Observation", params={"code": f"{LOINC}|14927-8"}).json()["total"] == 2


def test_decisions_on_one_table_at_the_same_moment_both_land(server: str, review: httpx.Client,
                                                               ingested: str) -> None:
    tg, zz9 = _conflict(review, "TG"), _conflict(review, "ZZ9")
    outcomes: list[int] = []

    def decide(conflict: dict[str, Any], body: dict[str, Any]) -> None:
        with httpx.Client(base_url=server, headers=bearer(REVIEWER), timeout=60) as client:
            outcomes.append(client.post(f"/governance/conflicts/{conflict['id']}/$decide",
                                        json={"version": conflict["version"], **body}).status_code)

    threads = [threading.Thread(target=decide, args=(tg, {"action": "approve", "reason": "并发一",
                                                          "target": {"system": LOINC, "code": "14927-8"}})),
               threading.Thread(target=decide, args=(zz9, {"action": "not-applicable", "reason": "并发二"}))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == [200, 200]
    exported = review.get(f"/governance/mappings/{ingested}").text
    assert "lab-item,TG,甘油三酯,http://loinc.org,14927-8" in exported and "lab-item,ZZ9,某本地项目,,,,unmatched" in exported


def test_a_table_saved_by_chinese_excel_loads(review: httpx.Client, ingested: str) -> None:
    table_text = "source_system,source_code,source_display,target_system,target_code\nlab-item,TG,甘油三酯,http://loinc.org,14927-8\n"
    loaded = review.put(f"/governance/mappings/{ingested}", content=table_text.encode("gb18030"))
    assert loaded.status_code == 200, loaded.text
    assert "甘油三酯" in review.get(f"/governance/mappings/{ingested}").text


def test_hostile_input_gets_clear_4xx_and_changes_nothing(review: httpx.Client, ingested: str) -> None:
    assert review.get("/governance/conflicts", params={"q": "a\x00b"}).status_code == 400
    assert review.get("/governance/conflicts", params={"source": "x\x01"}).status_code == 400
    assert review.get("/governance/conflicts", params={"offset": 2**63}).status_code == 400
    tg = _conflict(review, "TG")
    response = review.post(f"/governance/conflicts/{tg['id']}/$decide",
                           json={"action": "reject", "version": tg["version"], "reason": "bad\x00reason"})
    assert response.status_code == 400
    assert review.post(f"/governance/conflicts/{tg['id']}/$decide",
                       json={"action": "reject", "version": 2**63, "reason": "x"}).status_code == 400
    assert review.put(f"/governance/mappings/{ingested}", content=b"source_system,source_code\nlab-item,A\x00B\n"
                      ).status_code == 400
    control = review.put(f"/governance/mappings/{ingested}",
                         content="source_system,source_code,equivalence\nlab-item,A\x01B,unmatched\n".encode())
    assert control.status_code == 400, control.text
    assert review.get("/governance/mappings/nobody-has-this").status_code == 404
    assert _conflict(review, "TG")["status"] == "open"


def test_control_characters_in_admin_bodies_are_400(server: str, database: Database) -> None:
    # schemathesis found POST /admin/clients {"name": "\u0000"} → 500 on PostgreSQL (a NUL cannot be stored)
    with httpx.Client(base_url=server, headers=bearer(), timeout=30) as admin:
        response = admin.post("/admin/clients", json={"name": "\u0000", "role": "app"})
        assert response.status_code == 400 and "control characters" in response.text
        response = admin.post("/admin/sources", json={"source_id": "s1", "institution": "org-x", "name": "a\u0001",
                                                      "system_kind": "HIS", "adapter": "frontdb", "connection": "x"})
        assert response.status_code == 400
