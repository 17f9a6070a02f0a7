"""Who may do what: each role × each endpoint family → the expected status, all asserted."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from hub.auth.principal import Principal
from hub.auth.roles import Role
from hub.store.database import Database
from tests.auth.support import principal, tagged
from tests.conftest import ADMIN, FHIR_JSON, bearer

ROLES: dict[str, Principal | None] = {
    "anonymous": None,
    "admin": ADMIN,
    "source-admin": principal(Role.SOURCE_ADMIN, institutions=("org-a",)),
    "app": principal(Role.APP),
    "governance": principal(Role.GOVERNANCE),
    "reader": principal(Role.READER),
    "clinician-cds": principal(Role.CLINICIAN_CDS),
}

_OBSERVATION = tagged({"resourceType": "Observation", "status": "final", "code": {"text": "血糖"},
                       "subject": {"reference": "Patient/pa"}}, "org-a")
_TRANSACTION = {"resourceType": "Bundle", "type": "transaction", "entry": [
    {"resource": _OBSERVATION, "request": {"method": "POST", "url": "Observation"}}]}
_CODE_SYSTEM = {"resourceType": "CodeSystem", "status": "active", "content": "complete", "url": "urn:test:cs"}
_CLIENT = {"name": "new app", "role": "app"}
_SUBSCRIPTION = {"resourceType": "Subscription", "status": "requested", "reason": "结果回传", "criteria": "Task",
                 "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"}}

Call = Callable[[httpx.Client], httpx.Response]
FAMILIES: dict[str, Call] = {
    "capabilities": lambda c: c.get("/fhir/metadata"),
    "smart configuration": lambda c: c.get("/.well-known/smart-configuration"),
    "health": lambda c: c.get("/health"),
    "read": lambda c: c.get("/fhir/Patient/pa"),
    "search": lambda c: c.get("/fhir/Observation", params={"subject": "Patient/pa"}),
    "search Condition": lambda c: c.get("/fhir/Condition"),
    "create clinical": lambda c: c.post("/fhir/Observation", json=_OBSERVATION),
    "create terminology": lambda c: c.post("/fhir/CodeSystem", json=_CODE_SYSTEM),
    "update patient": lambda c: c.put("/fhir/Patient/pa", json=tagged(
        {"resourceType": "Patient", "id": "pa", "gender": "female"}, "org-a")),
    "delete": lambda c: c.delete("/fhir/Observation/oa"),
    "transaction": lambda c: c.post("/fhir", json=_TRANSACTION),
    "system history": lambda c: c.get("/fhir/_history"),
    "everything": lambda c: c.get("/fhir/Patient/pa/$everything"),
    "audit trail": lambda c: c.get("/fhir/AuditEvent"),
    "list clients": lambda c: c.get("/admin/clients"),
    "register client": lambda c: c.post("/admin/clients", json=_CLIENT),
    "patient match": lambda c: c.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": {"resourceType": "Patient", "gender": "male"}}]}),
    "match review": lambda c: c.get("/governance/matches"),
    "empi decision": lambda c: c.post("/empi/$unlink", json={"patient": "pa", "reason": "测试"}),
    "create subscription": lambda c: c.post("/fhir/Subscription", json=_SUBSCRIPTION),
    "bulk export": lambda c: c.get("/fhir/Patient/$export", headers={"Prefer": "respond-async"}),
}

# anonymous, admin, source-admin (of org-a), app, governance, reader, clinician-cds
EXPECTED: dict[str, tuple[int, ...]] = {
    "capabilities":        (200, 200, 200, 200, 200, 200, 200),
    "smart configuration": (200, 200, 200, 200, 200, 200, 200),
    "health":              (200, 200, 200, 200, 200, 200, 200),
    "read":                (401, 200, 200, 200, 200, 200, 200),
    "search":              (401, 200, 200, 200, 200, 200, 200),
    "search Condition":    (401, 200, 200, 200, 200, 200, 403),
    "create clinical":     (401, 201, 201, 403, 403, 201, 403),
    "create terminology":  (401, 201, 403, 403, 201, 403, 403),
    "update patient":      (401, 200, 200, 403, 403, 403, 403),
    "delete":              (401, 200, 200, 403, 403, 403, 403),
    "transaction":         (401, 200, 200, 403, 403, 200, 403),
    "system history":      (401, 200, 403, 200, 200, 200, 403),
    "everything":          (401, 200, 200, 200, 200, 200, 200),
    "audit trail":         (401, 200, 403, 403, 403, 403, 403),
    "list clients":        (401, 200, 403, 403, 403, 403, 403),
    "register client":     (401, 201, 403, 403, 403, 403, 403),
    "patient match":       (401, 200, 403, 200, 200, 200, 200),
    "match review":        (401, 200, 403, 403, 200, 403, 403),
    "empi decision":       (401, 404, 403, 403, 404, 403, 403),
    "create subscription": (401, 201, 201, 201, 403, 201, 403),
    "bulk export":         (401, 202, 403, 202, 403, 403, 403),
}
CASES = [(family, role, EXPECTED[family][i]) for family in FAMILIES for i, role in enumerate(ROLES)]


@pytest.fixture
def seeded(fhir: httpx.Client, database: Database) -> Iterator[None]:
    for resource in (
        {"resourceType": "Organization", "id": "org-a", "name": "A 医院"},
        tagged({"resourceType": "Patient", "id": "pa", "gender": "male"}, "org-a"),
        tagged({**_OBSERVATION, "id": "oa"}, "org-a"),
    ):
        assert fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource).status_code in (200, 201)
    yield


def test_every_family_is_in_the_table() -> None:
    assert set(EXPECTED) == set(FAMILIES) and all(len(row) == len(ROLES) for row in EXPECTED.values())


@pytest.mark.parametrize(("family", "role", "status"), CASES, ids=[f"{f}-{r}" for f, r, _ in CASES])
def test_access(server: str, seeded: None, family: str, role: str, status: int) -> None:
    who = ROLES[role]
    headers = {"Content-Type": FHIR_JSON, **(bearer(who) if who is not None else {})}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as client:
        response = FAMILIES[family](client)
    assert response.status_code == status, f"{family} as {role}: {response.status_code} {response.text[:300]}"
    if status in (401, 403):
        body = response.json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["code"] == ("login" if status == 401 else "forbidden")
