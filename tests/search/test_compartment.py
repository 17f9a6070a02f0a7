"""Patient compartment search (``Patient/p1/Observation``) and ``Patient/p1/$everything`` over HTTP."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import httpx
import pytest

from tests.conftest import assert_outcome
from tests.search.support import all_pages, ids, latest, load, search, searchset

LOINC = "http://loinc.org"
GLUCOSE, SBP = "2339-0", "8480-6"
ENCOUNTER_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
CONDITION_CODE = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}], "text": "2型糖尿病"}


def _ref(target: str) -> dict:
    return {"reference": target}


def _obs(oid: str, subject: str, code: str, **extra: object) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": _ref(f"Patient/{subject}"), **extra}


RESOURCES: list[dict] = [
    {"resourceType": "Organization", "id": "org1", "name": "昆山市第一人民医院"},
    {"resourceType": "Patient", "id": "p1", "name": [{"text": "张三"}],
     "managingOrganization": _ref("Organization/org1")},
    {"resourceType": "Patient", "id": "p2", "name": [{"text": "李四"}]},
    _obs("o1", "p1", GLUCOSE),
    _obs("o2", "p1", SBP),
    _obs("o3", "p2", GLUCOSE),
    _obs("o4", "p2", SBP, performer=[_ref("Patient/p1")]),  # p1 performed it: in p1's compartment too
    {"resourceType": "Condition", "id": "c1", "subject": _ref("Patient/p1"), "code": CONDITION_CODE},
    {"resourceType": "Condition", "id": "c2", "subject": _ref("Patient/p2"), "code": CONDITION_CODE},
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": ENCOUNTER_CLASS,
     "subject": _ref("Patient/p1")},
    {"resourceType": "Encounter", "id": "e2", "status": "finished", "class": ENCOUNTER_CLASS,
     "subject": _ref("Patient/p2")},
    {"resourceType": "RiskAssessment", "id": "ra1", "status": "final", "subject": _ref("Patient/p1")},
]

P1_COMPARTMENT = {"Patient/p1", "Observation/o1", "Observation/o2", "Observation/o4", "Condition/c1", "Encounter/e1",
                  "RiskAssessment/ra1"}
ONLY_P2 = {"Observation/o3", "Condition/c2", "Encounter/e2"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("Patient/p1/Observation", {"o1", "o2", "o4"}, id="subject-or-performer"),
        pytest.param("Patient/p2/Observation", {"o3", "o4"}, id="other-patient"),
        pytest.param(f"Patient/p1/Observation?code={GLUCOSE}", {"o1"}, id="with-criteria"),
        pytest.param(f"Patient/p1/Observation?code={SBP}", {"o2", "o4"}, id="with-criteria-performer"),
        pytest.param("Patient/p1/Observation?_id=o3", set(), id="id-outside-compartment"),
        pytest.param("Patient/p1/Condition", {"c1"}, id="condition"),
        pytest.param("Patient/p1/Encounter", {"e1"}, id="encounter"),
        pytest.param("Patient/p2/RiskAssessment", set(), id="empty"),
    ],
)
def test_compartment_search_finds_only_the_patients_resources(
    fhir: httpx.Client, path: str, expected: set[str]
) -> None:
    """``GET Patient/{id}/{type}`` finds the resources of that patient's compartment, and honours criteria."""
    load(fhir, RESOURCES)
    assert set(ids(search(fhir, f"/{path}"))) == expected


def test_compartment_search_pages(fhir: httpx.Client) -> None:
    """A compartment search pages with ``next`` links that stay in the compartment."""
    load(fhir, RESOURCES)
    pages = all_pages(fhir, search(fhir, "/Patient/p1/Observation", {"_count": "2"}))
    seen = [pid for page in pages for pid in ids(page)]
    assert sorted(seen) == ["o1", "o2", "o4"]


def test_compartment_errors(fhir: httpx.Client) -> None:
    """A type outside the patient compartment is 400; an unknown patient is 404."""
    load(fhir, RESOURCES)
    assert_outcome(fhir.get("/Patient/p1/Organization"), 400, contains="Organization")
    assert_outcome(fhir.get("/Patient/nobody/Observation"), 404, contains="nobody")
    assert_outcome(fhir.get("/Patient/p1/Observation", params={"foo": "bar"}), 400, contains="foo")


def _all_refs(pages: list[dict]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for page in pages for e in page.get("entry", [])]


def test_everything_returns_the_patient_and_its_compartment(fhir: httpx.Client) -> None:
    """``$everything`` returns the patient and every resource of its compartment, none of another patient's."""
    load(fhir, RESOURCES)
    pages = all_pages(fhir, searchset(fhir.get("/Patient/p1/$everything")))
    found = _all_refs(pages)
    assert len(found) == len(set(found)), found
    assert P1_COMPARTMENT <= set(found)
    assert not ONLY_P2 & set(found)
    assert_outcome(fhir.get("/Patient/nobody/$everything"), 404, contains="nobody")


def test_everything_pages(fhir: httpx.Client) -> None:
    """``$everything`` pages with ``next`` links; the pages together hold every resource once."""
    load(fhir, RESOURCES)
    whole = set(_all_refs(all_pages(fhir, searchset(fhir.get("/Patient/p1/$everything")))))
    pages = all_pages(fhir, searchset(fhir.get("/Patient/p1/$everything", params={"_count": "3"})))
    assert len(pages) >= 3
    assert all(len(page.get("entry", [])) <= 3 for page in pages)
    found = _all_refs(pages)
    assert len(found) == len(set(found)), found
    assert set(found) == whole


def test_everything_type_filter(fhir: httpx.Client) -> None:
    """``$everything?_type=Observation`` returns only the patient's observations (besides the patient)."""
    load(fhir, RESOURCES)
    found = set(_all_refs(all_pages(fhir, searchset(fhir.get("/Patient/p1/$everything?_type=Observation")))))
    assert {r for r in found if r.startswith("Observation/")} == {"Observation/o1", "Observation/o2", "Observation/o4"}
    assert {r.split("/")[0] for r in found} <= {"Observation", "Patient"}


def test_everything_since(fhir: httpx.Client) -> None:
    """``$everything?_since=`` returns only what changed since the instant."""
    loaded = datetime.fromisoformat(latest(load(fhir, RESOURCES)).replace("Z", "+00:00"))
    stamp = (loaded + timedelta(milliseconds=1)).isoformat()  # after the load, before the changes
    time.sleep(0.05)
    for path, field, value in (("Observation/o2", "status", "amended"), ("Condition/c1", "onsetDateTime", "2024-05")):
        resource = fhir.get(f"/{path}").json()
        resource[field] = value
        assert fhir.put(f"/{path}", json=resource).status_code == 200
    response = fhir.get("/Patient/p1/$everything", params={"_since": stamp})
    found = set(_all_refs(all_pages(fhir, searchset(response))))
    assert {"Observation/o2", "Condition/c1"} <= found
    assert not found & {"Observation/o1", "Observation/o4", "Encounter/e1", "RiskAssessment/ra1", "Observation/o3"}
