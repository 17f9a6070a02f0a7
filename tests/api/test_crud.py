"""Create, read, vread, update, patch, delete and history over real HTTP."""

from __future__ import annotations

from datetime import datetime

import httpx

from tests.conftest import assert_outcome, patient


def _create(fhir: httpx.Client, resource: dict) -> dict:
    response = fhir.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_assigns_id_version_and_headers(fhir: httpx.Client) -> None:
    response = fhir.post("/Patient", json=patient(id="client-chosen"))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] != "client-chosen"  # POST ignores the client's id
    assert body["meta"]["versionId"] == "1"
    datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert "GMT" in response.headers["last-modified"]
    assert response.headers["content-type"].startswith("application/fhir+json")


def test_read_serves_the_stored_bytes(fhir: httpx.Client) -> None:
    created = fhir.post("/Patient", json=patient())
    read = fhir.get(f"/Patient/{created.json()['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert read.headers["etag"] == 'W/"1"'


def test_chinese_text_round_trips_byte_exact(fhir: httpx.Client) -> None:
    raw = (
        '{"resourceType":"Patient","name":[{"text":"欧阳娜娜","family":"欧阳","given":["娜娜"]}],'
        '"address":[{"text":"江苏省苏州市昆山市玉山镇前进西路１号","city":"昆山市"}],"gender":"female"}'
    ).encode("utf-8")
    created = fhir.post("/Patient", content=raw)
    assert created.status_code == 201
    read = fhir.get(f"/Patient/{created.json()['id']}")
    assert "欧阳娜娜".encode() in read.content and "前进西路１号".encode() in read.content
    assert b"\\u" not in read.content  # not escaped
    assert read.json()["address"][0]["text"] == "江苏省苏州市昆山市玉山镇前进西路１号"


def test_decimal_precision_is_kept(fhir: httpx.Client) -> None:
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"Hb"},'
           b'"valueQuantity":{"value":120.50,"unit":"g/L"}}')
    created = fhir.post("/Observation", content=raw)
    assert created.status_code == 201
    assert b'"value":120.50' in fhir.get(f"/Observation/{created.json()['id']}").content


def test_update_increments_version_and_vread_returns_each(fhir: httpx.Client) -> None:
    body = _create(fhir, patient())
    pid = body["id"]
    body["gender"] = "female"
    updated = fhir.put(f"/Patient/{pid}", json=body)
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.headers["etag"] == 'W/"2"'
    assert fhir.get(f"/Patient/{pid}/_history/1").json()["gender"] == "male"
    assert fhir.get(f"/Patient/{pid}/_history/2").json()["gender"] == "female"
    assert fhir.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "2"
    assert_outcome(fhir.get(f"/Patient/{pid}/_history/3"), 404)
    assert_outcome(fhir.get(f"/Patient/{pid}/_history/abc"), 404)


def test_update_with_unchanged_content_makes_no_new_version(fhir: httpx.Client) -> None:
    body = _create(fhir, patient())
    again = fhir.put(f"/Patient/{body['id']}", json=body)
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"
    history = fhir.get(f"/Patient/{body['id']}/_history").json()
    assert history["total"] == 1


def test_update_as_create_with_client_id(fhir: httpx.Client) -> None:
    response = fhir.put("/Patient/hosp-a-0001", json=patient(id="hosp-a-0001"))
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "1"
    assert response.headers["location"].endswith("/Patient/hosp-a-0001/_history/1")


def test_update_requires_matching_id(fhir: httpx.Client) -> None:
    assert_outcome(fhir.put("/Patient/a1", json=patient()), 400, contains="must have an id")
    assert_outcome(fhir.put("/Patient/a1", json=patient(id="b2")), 400, contains="does not match")
    assert_outcome(fhir.put("/Patient/bad$id", json=patient(id="bad$id")), 400, contains="Invalid resource id")


def test_delete_keeps_history_and_read_is_gone(fhir: httpx.Client) -> None:
    body = _create(fhir, patient())
    pid = body["id"]
    deleted = fhir.delete(f"/Patient/{pid}")
    assert deleted.status_code == 200
    assert deleted.json()["resourceType"] == "OperationOutcome"
    assert_outcome(fhir.get(f"/Patient/{pid}"), 410, contains="deleted")
    assert fhir.get(f"/Patient/{pid}/_history/1").json()["id"] == pid
    assert_outcome(fhir.get(f"/Patient/{pid}/_history/2"), 410)
    history = fhir.get(f"/Patient/{pid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    # deleting again is a no-op, not a new version
    assert fhir.delete(f"/Patient/{pid}", headers={"Prefer": "return=minimal"}).status_code == 204
    assert fhir.get(f"/Patient/{pid}/_history").json()["total"] == 2
    # deleted resources are not found by search
    assert fhir.get("/Patient", params={"_id": pid}).json()["total"] == 0


def test_update_after_delete_resurrects_with_next_version(fhir: httpx.Client) -> None:
    body = _create(fhir, patient())
    pid = body["id"]
    fhir.delete(f"/Patient/{pid}")
    revived = fhir.put(f"/Patient/{pid}", json=body)
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"


def test_delete_of_unknown_resource_is_not_an_error(fhir: httpx.Client) -> None:
    response = fhir.delete("/Patient/never-existed")
    assert response.status_code == 200
    assert "nothing deleted" in response.json()["issue"][0]["diagnostics"]


def test_read_unknown_is_404_outcome(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient/nope"), 404, contains="Patient/nope")


def test_json_patch(fhir: httpx.Client) -> None:
    body = _create(fhir, patient(birthDate="1970-01-01"))
    pid = body["id"]
    ops = [{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": True}]
    patched = fhir.patch(f"/Patient/{pid}", json=ops, headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["gender"] == "female" and patched.json()["active"] is True
    assert patched.json()["meta"]["versionId"] == "2"
    history = fhir.get(f"/Patient/{pid}/_history").json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


def test_json_patch_errors(fhir: httpx.Client) -> None:
    pid = _create(fhir, patient())["id"]
    patch_headers = {"Content-Type": "application/json-patch+json"}
    # the result must still be valid FHIR
    bad = [{"op": "replace", "path": "/gender", "value": "bogus"}]
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=bad, headers=patch_headers), 400, contains="gender")
    failing_test = [{"op": "test", "path": "/gender", "value": "female"}]
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=failing_test, headers=patch_headers), 422)
    change_id = [{"op": "replace", "path": "/id", "value": "other"}]
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=change_id, headers=patch_headers), 422, contains="id")
    assert_outcome(fhir.patch(f"/Patient/{pid}", json={"op": "x"}, headers=patch_headers), 400)
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=bad), 415)
    assert_outcome(fhir.patch("/Patient/missing", json=[], headers=patch_headers), 404)
    assert fhir.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "1"


def test_prefer_return(fhir: httpx.Client) -> None:
    minimal = fhir.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = fhir.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.json()["issue"][0]["severity"] == "information"
    full = fhir.post("/Patient", json=patient(), headers={"Prefer": "return=representation"})
    assert full.json()["resourceType"] == "Patient"


def test_instance_type_and_system_history(fhir: httpx.Client) -> None:
    first = _create(fhir, patient())
    first["active"] = True
    fhir.put(f"/Patient/{first['id']}", json=first)
    _create(fhir, {"resourceType": "Organization", "name": "昆山市第一人民医院"})
    instance = fhir.get(f"/Patient/{first['id']}/_history").json()
    assert instance["type"] == "history" and instance["total"] == 2
    assert [e["response"]["etag"] for e in instance["entry"]] == ['W/"2"', 'W/"1"']
    type_level = fhir.get("/Patient/_history").json()
    assert type_level["total"] == 2
    system = fhir.get("/_history").json()
    assert system["total"] == 3
    assert system["entry"][0]["resource"]["resourceType"] == "Organization"  # newest first


def test_history_count_paging_and_since(fhir: httpx.Client) -> None:
    body = _create(fhir, patient())
    pid = body["id"]
    for gender in ("female", "other", "unknown", "male"):
        body["gender"] = gender
        assert fhir.put(f"/Patient/{pid}", json=body).status_code == 200
    page1 = fhir.get(f"/Patient/{pid}/_history", params={"_count": 2}).json()
    assert page1["total"] == 5 and len(page1["entry"]) == 2
    assert [e["resource"]["meta"]["versionId"] for e in page1["entry"]] == ["5", "4"]
    next_url = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = fhir.get(next_url).json()
    assert [e["resource"]["meta"]["versionId"] for e in page2["entry"]] == ["3", "2"]
    v3_time = fhir.get(f"/Patient/{pid}/_history/3").json()["meta"]["lastUpdated"]
    since = fhir.get(f"/Patient/{pid}/_history", params={"_since": v3_time}).json()
    assert {e["resource"]["meta"]["versionId"] for e in since["entry"]} == {"3", "4", "5"}
    assert_outcome(fhir.get(f"/Patient/{pid}/_history", params={"_since": "yesterday"}), 400, contains="_since")
    assert_outcome(fhir.get(f"/Patient/{pid}/_history", params={"_count": "-1"}), 400, contains="_count")
    assert_outcome(fhir.get("/Patient/unknown-id/_history"), 404)


def test_head_answers_headers_only(fhir: httpx.Client) -> None:
    pid = _create(fhir, patient())["id"]
    head = fhir.head(f"/Patient/{pid}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == 'W/"1"'
    assert fhir.head("/Patient/missing").status_code == 404
