"""Institution scoping: hospital IT and consortium-limited apps see and change only their data."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.store.database import Database
from tests.auth.support import principal, tagged
from tests.conftest import assert_outcome, fhir_client

HOSPITAL_A_IT = principal(Role.SOURCE_ADMIN, institutions=("org-a",), client_id="it-a")
CONSORTIUM_1_APP = principal(Role.APP, consortia=("cons-1",), client_id="app-c1")


def _org(org_id: str, part_of: str | None = None) -> dict:
    org = {"resourceType": "Organization", "id": org_id, "name": org_id}
    return {**org, "partOf": {"reference": f"Organization/{part_of}"}} if part_of else org


def _patient(pid: str, institution: str | None) -> dict:
    body = {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:mrn", "value": pid}]}
    return tagged(body, institution) if institution else body


def _observation(oid: str, subject: str, institution: str) -> dict:
    return tagged({"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "血糖"},
                   "subject": {"reference": f"Patient/{subject}"}}, institution)


@pytest.fixture
def region(fhir: httpx.Client, database: Database) -> Iterator[None]:
    """Region → consortia cons-1 (org-a, its branch org-a1) and cons-2 (org-b); patients of each, one untagged."""
    resources = [
        _org("region"), _org("cons-1", "region"), _org("cons-2", "region"), _org("org-a", "cons-1"),
        _org("org-a1", "org-a"), _org("org-b", "cons-2"),
        _patient("pa", "org-a"), _patient("pa1", "org-a1"), _patient("pb", "org-b"), _patient("pu", None),
        _observation("oa", "pa", "org-a"), _observation("ob", "pb", "org-b"),
    ]
    for resource in resources:
        response = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code == 201, response.text
    yield


def _ids(bundle: dict) -> set[str]:
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def _as(server: str, who: Principal) -> httpx.Client:
    return fhir_client(server, who)


@pytest.mark.parametrize(("who", "expected"), [
    (None, {"pa", "pa1", "pb", "pu"}),
    (HOSPITAL_A_IT, {"pa", "pa1"}),
    (CONSORTIUM_1_APP, {"pa", "pa1"}),
    (principal(Role.APP, consortia=("cons-2",)), {"pb"}),
    (principal(Role.APP, consortia=("region",)), {"pa", "pa1", "pb"}),
    (principal(Role.APP), {"pa", "pa1", "pb", "pu"}),
])
def test_search_sees_only_reachable_institutions(server: str, region: None, fhir: httpx.Client,
                                                 who: Principal | None, expected: set[str]) -> None:
    client = fhir if who is None else _as(server, who)
    bundle = client.get("/Patient", params={"_count": 2}).json()
    assert bundle["total"] == len(expected)  # counted in SQL, not filtered after paging
    seen = _ids(bundle)
    while any(link["relation"] == "next" for link in bundle["link"]):
        bundle = client.get(next(link["url"] for link in bundle["link"] if link["relation"] == "next")).json()
        seen |= _ids(bundle)
    assert seen == expected


def test_other_institutions_data_is_invisible(server: str, region: None) -> None:
    with _as(server, HOSPITAL_A_IT) as it:
        assert_outcome(it.get("/Patient/pb"), 404)
        assert_outcome(it.get("/Patient/pb/_history"), 404)
        assert_outcome(it.get("/Patient/pb/$everything"), 404)
        assert it.get("/Observation", params={"subject": "Patient/pb"}).json()["total"] == 0
        assert _ids(it.get("/Observation", params={"_include": "Observation:subject"}).json()) == {"oa", "pa"}
        assert _ids(it.get("/Patient", params={"_revinclude": "Observation:subject"}).json()) == {"pa", "pa1", "oa"}
        assert _ids(it.get("/Patient/pa/$everything").json()) == {"pa", "oa"}
        assert it.get("/Organization/org-b").status_code == 200  # shared reference data
        assert_outcome(it.get("/Patient/_history"), 403, contains="institution-bound")


def test_hospital_it_cannot_change_another_institutions_data(server: str, region: None, fhir: httpx.Client) -> None:
    with _as(server, HOSPITAL_A_IT) as it:
        assert_outcome(it.put("/Patient/pb", json=_patient("pb", None) | {"gender": "female"}), 403,
                       contains="another institution")
        assert_outcome(it.put("/Patient/pb", json=_patient("pb", "org-b")), 403, contains="org-b")
        foreign = {k: v for k, v in _observation("x", "pb", "org-b").items() if k != "id"}
        assert_outcome(it.post("/Observation", json=foreign), 403, contains="org-b")
        assert_outcome(it.put("/Patient/pa", json=_patient("pa", "org-b")), 403, contains="org-b")
        transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": _patient("new-a", "org-a"), "request": {"method": "PUT", "url": "Patient/new-a"}},
            {"resource": _patient("pb", "org-b"), "request": {"method": "PUT", "url": "Patient/pb"}},
        ]}
        assert_outcome(it.post("", json=transaction), 403)
        it.delete("/Patient/pb")
    assert fhir.get("/Patient/new-a").status_code == 404  # the transaction wrote nothing
    kept = fhir.get("/Patient/pb").json()
    assert kept["meta"]["versionId"] == "1" and "gender" not in kept


def test_writes_are_stamped_with_the_institution(server: str, region: None, fhir: httpx.Client) -> None:
    with _as(server, HOSPITAL_A_IT) as it:
        created = it.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                "code": {"text": "血压"}, "subject": {"reference": "Patient/pa"}})
        assert created.status_code == 201, created.text
        tags = created.json()["meta"]["tag"]
        assert tags == [{"system": "urn:hub:institution", "code": "org-a"}]
        new_id = created.json()["id"]
        assert it.get(f"/Observation/{new_id}").status_code == 200
    with _as(server, principal(Role.APP, consortia=("cons-2",))) as other:
        assert_outcome(other.get(f"/Observation/{new_id}"), 404)
    two = principal(Role.SOURCE_ADMIN, institutions=("org-a", "org-b"))
    with _as(server, two) as it2:
        assert_outcome(it2.post("/Patient", json={"resourceType": "Patient"}), 400, contains="urn:hub:institution")
        assert it2.post("/Patient", json=tagged({"resourceType": "Patient"}, "org-b")).status_code == 201
