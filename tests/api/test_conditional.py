"""ETag/If-Match and conditional create/update/delete with the FHIR 0/1/many rules."""

from __future__ import annotations

import httpx

from tests.conftest import MRN, assert_outcome, patient, with_mrn


def test_if_match_on_update(fhir: httpx.Client) -> None:
    body = fhir.post("/Patient", json=patient()).json()
    pid = body["id"]
    body["active"] = True
    assert_outcome(fhir.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"7"'}), 412, contains='W/"1"')
    ok = fhir.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    body["active"] = False
    assert_outcome(fhir.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}), 412)
    assert_outcome(fhir.put(f"/Patient/{pid}", json=body, headers={"If-Match": "garbage"}), 400, contains="If-Match")
    assert fhir.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_if_match_on_patch_and_delete(fhir: httpx.Client) -> None:
    pid = fhir.post("/Patient", json=patient()).json()["id"]
    ops = [{"op": "add", "path": "/active", "value": True}]
    headers = {"Content-Type": "application/json-patch+json", "If-Match": 'W/"2"'}
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=ops, headers=headers), 412)
    assert_outcome(fhir.delete(f"/Patient/{pid}", headers={"If-Match": 'W/"2"'}), 412)
    assert fhir.delete(f"/Patient/{pid}", headers={"If-Match": '"1"'}).status_code == 200
    assert_outcome(fhir.get(f"/Patient/{pid}"), 410)


def test_conditional_create(fhir: httpx.Client) -> None:
    headers = {"If-None-Exist": f"identifier={MRN}|0001"}
    first = fhir.post("/Patient", json=with_mrn("0001"), headers=headers)
    assert first.status_code == 201
    second = fhir.post("/Patient", json=with_mrn("0001"), headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|0001"}).json()["total"] == 1
    # two matches -> 412 and nothing created
    fhir.post("/Patient", json=with_mrn("0002"))
    fhir.post("/Patient", json=with_mrn("0002"))
    many = fhir.post("/Patient", json=with_mrn("0002"), headers={"If-None-Exist": f"identifier={MRN}|0002"})
    assert_outcome(many, 412, contains="more than one")
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|0002"}).json()["total"] == 2


def test_conditional_create_validates_before_matching(fhir: httpx.Client) -> None:
    bad = with_mrn("0003", gender="bogus")
    assert_outcome(fhir.post("/Patient", json=bad, headers={"If-None-Exist": f"identifier={MRN}|0003"}), 400)


def test_conditional_update_zero_one_many(fhir: httpx.Client) -> None:
    # no match, no id: created with a server id
    created = fhir.put("/Patient", params={"identifier": f"{MRN}|1001"}, json=with_mrn("1001"))
    assert created.status_code == 201
    pid = created.json()["id"]
    # one match: updated in place
    updated = fhir.put("/Patient", params={"identifier": f"{MRN}|1001"}, json=with_mrn("1001", active=True))
    assert updated.status_code == 200
    assert updated.json()["id"] == pid and updated.json()["meta"]["versionId"] == "2"
    # one match but another id in the body
    assert_outcome(
        fhir.put("/Patient", params={"identifier": f"{MRN}|1001"}, json=with_mrn("1001", id="other")), 400
    )
    # no match, client id given: update-as-create with that id
    with_id = fhir.put("/Patient", params={"identifier": f"{MRN}|1002"}, json=with_mrn("1002", id="mrn-1002"))
    assert with_id.status_code == 201 and with_id.json()["id"] == "mrn-1002"
    # many matches: 412
    fhir.post("/Patient", json=with_mrn("1003"))
    fhir.post("/Patient", json=with_mrn("1003"))
    assert_outcome(fhir.put("/Patient", params={"identifier": f"{MRN}|1003"}, json=with_mrn("1003")), 412)
    # no criteria at all
    assert_outcome(fhir.put("/Patient", json=with_mrn("1004")), 400, contains="criteria")


def test_conditional_update_refuses_existing_id_that_does_not_match(fhir: httpx.Client) -> None:
    fhir.put("/Patient/p-1", json=with_mrn("2001", id="p-1"))
    response = fhir.put("/Patient", params={"identifier": f"{MRN}|2002"}, json=with_mrn("2002", id="p-1"))
    assert_outcome(response, 409, contains="does not match")


def test_conditional_delete(fhir: httpx.Client) -> None:
    none = fhir.delete("/Patient", params={"identifier": f"{MRN}|3001"})
    assert none.status_code == 200 and "nothing deleted" in none.text
    pid = fhir.post("/Patient", json=with_mrn("3001")).json()["id"]
    assert fhir.delete("/Patient", params={"identifier": f"{MRN}|3001"}).status_code == 200
    assert_outcome(fhir.get(f"/Patient/{pid}"), 410)
    fhir.post("/Patient", json=with_mrn("3002"))
    fhir.post("/Patient", json=with_mrn("3002"))
    assert_outcome(fhir.delete("/Patient", params={"identifier": f"{MRN}|3002"}), 412)
    assert fhir.get("/Patient", params={"identifier": f"{MRN}|3002"}).json()["total"] == 2


def test_conditional_patch(fhir: httpx.Client) -> None:
    headers = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "add", "path": "/active", "value": True}]
    assert_outcome(fhir.patch("/Patient", params={"identifier": f"{MRN}|4001"}, json=ops, headers=headers), 404)
    pid = fhir.post("/Patient", json=with_mrn("4001")).json()["id"]
    done = fhir.patch("/Patient", params={"identifier": f"{MRN}|4001"}, json=ops, headers=headers)
    assert done.status_code == 200 and done.json()["id"] == pid and done.json()["active"] is True


def test_identifier_and_id_search_forms(fhir: httpx.Client) -> None:
    a = fhir.post("/Patient", json=with_mrn("5001")).json()["id"]
    b = fhir.post("/Patient", json=patient(identifier=[{"value": "5001"}])).json()["id"]
    c = fhir.post("/Patient", json=patient(identifier=[{"system": "urn:other", "value": "x"}])).json()["id"]

    def ids(**params: str) -> set[str]:
        bundle = fhir.get("/Patient", params=params).json()
        assert bundle["type"] == "searchset"
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert ids(identifier=f"{MRN}|5001") == {a}
    assert ids(identifier="5001") == {a, b}
    assert ids(identifier="|5001") == {b}
    assert ids(identifier=f"{MRN}|") == {a}
    assert ids(identifier=f"{MRN}|5001,urn:other|x") == {a, c}
    assert ids(_id=f"{a},{c}") == {a, c}
    assert ids(_id=a, identifier="urn:other|x") == set()
    # identifiers are re-indexed on update
    body = fhir.get(f"/Patient/{c}").json()
    body["identifier"] = [{"system": "urn:other", "value": "y"}]
    fhir.put(f"/Patient/{c}", json=body)
    assert ids(identifier="urn:other|x") == set()
    assert ids(identifier="urn:other|y") == {c}


def test_search_paging_and_unsupported_parameters(fhir: httpx.Client) -> None:
    for n in range(5):
        fhir.post("/Patient", json=with_mrn(f"6{n}"))
    page = fhir.get("/Patient", params={"_count": 2}).json()
    assert page["total"] == 5 and len(page["entry"]) == 2
    seen = {e["resource"]["id"] for e in page["entry"]}
    while any(link["relation"] == "next" for link in page["link"]):
        page = fhir.get(next(link["url"] for link in page["link"] if link["relation"] == "next")).json()
        seen |= {e["resource"]["id"] for e in page.get("entry", [])}
    assert len(seen) == 5
    count_only = fhir.get("/Patient", params={"_summary": "count"}).json()
    assert count_only["total"] == 5 and "entry" not in count_only
    assert fhir.get("/Patient", params={"name": "张"}).json()["total"] == 5
    assert_outcome(fhir.get("/Patient", params={"nickname": "张"}), 400, contains="nickname")
    form = fhir.post("/Patient/_search", content=f"identifier={MRN}|60",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200 and form.json()["total"] == 1


def test_if_match_star_lists_and_empty(fhir: httpx.Client) -> None:
    body = fhir.put("/Patient/im1", json=patient(id="im1")).json()
    body["active"] = True
    assert fhir.put("/Patient/im1", json=body, headers={"If-Match": "*"}).status_code == 200
    assert_outcome(fhir.put("/Patient/im-new", json=patient(id="im-new"), headers={"If-Match": "*"}), 412)
    body["active"] = False
    ok = fhir.put("/Patient/im1", json=body, headers={"If-Match": 'W/"1", W/"2"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"3"'
    assert_outcome(fhir.put("/Patient/im1", json=body, headers={"If-Match": ""}), 400, contains="If-Match")


def test_decimal_precision_change_is_a_new_version(fhir: httpx.Client) -> None:
    raw = b'{"resourceType":"Observation","id":"dp1","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5}}'
    assert fhir.put("/Observation/dp1", content=raw).status_code == 201
    assert fhir.put("/Observation/dp1", content=raw).json()["meta"]["versionId"] == "1"
    again = fhir.put("/Observation/dp1", content=raw.replace(b"1.5}", b"1.50}"))
    assert again.json()["meta"]["versionId"] == "2"
    assert b'"value":1.50' in fhir.get("/Observation/dp1").content
