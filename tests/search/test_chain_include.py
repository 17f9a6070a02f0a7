"""Chained and reverse-chained parameters, _include/_revinclude, _sort, _elements and _summary over HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.search.support import entries, ids, load, refs, search

LOINC = "http://loinc.org"
MRN = "urn:hub:mrn:org-ks-1"
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")
ENCOUNTER_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}


def _patient(pid: str, text: str, family: str, given: str, birth: str, org: str | None) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"text": text, "family": family, "given": [given]}],
                "identifier": [{"system": MRN, "value": pid.upper()}], "gender": "male", "birthDate": birth}
    if org:
        resource["managingOrganization"] = {"reference": f"Organization/{org}"}
    return resource


def _obs(oid: str, subject: str, code: str, encounter: str | None = None) -> dict:
    resource = {"resourceType": "Observation", "id": oid, "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": f"Patient/{subject}"}}
    if encounter:
        resource["encounter"] = {"reference": f"Encounter/{encounter}"}
    return resource


def _encounter(eid: str, subject: str, provider: str) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": ENCOUNTER_CLASS,
            "subject": {"reference": f"Patient/{subject}"},
            "serviceProvider": {"reference": f"Organization/{provider}"}}


P1_FULL = dict(
    _patient("p1", "张三", "张", "三", "1970-06-01", "org1"),
    text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">张三, 男, 1970-06-01</div>'},
    maritalStatus={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
    contact=[{"name": {"text": "李梅"}, "telecom": [{"system": "phone", "value": "13900000000"}]}],
    communication=[{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "zh-CN"}]}}],
)

RESOURCES: list[dict] = [
    {"resourceType": "Organization", "id": "org1", "name": "昆山市第一人民医院"},
    {"resourceType": "Organization", "id": "org2", "name": "苏州市立医院"},
    P1_FULL,
    _patient("p2", "李四", "李", "四", "1985-01-01", "org2"),
    _patient("p3", "张伟", "张", "伟", "1990-05-05", None),
    _encounter("e1", "p1", "org1"),
    _encounter("e2", "p2", "org2"),
    _obs("o1", "p1", "1234-5", "e1"),
    _obs("o2", "p2", "9999-9", "e2"),
    _obs("o3", "p3", "1234-5"),
    _obs("o4", "p1", "9999-9"),
]


def case(path: str, expected: set[str], name: str) -> object:
    return pytest.param(path, expected, id=name)


CHAIN_CASES = [
    case("Observation?subject:Patient.name=张", {"o1", "o3", "o4"}, "chain-typed"),
    case("Observation?subject:Patient.name=李,张伟", {"o2", "o3"}, "chain-or-values"),
    case(f"Observation?subject.identifier={MRN}|P1", {"o1", "o4"}, "chain-untyped-identifier"),
    case(f"Observation?patient.identifier={MRN}|P2", {"o2"}, "chain-patient-identifier"),
    case("Observation?subject:Patient.organization.name=昆山", {"o1", "o4"}, "chain-two-levels"),
    case("Observation?encounter.service-provider.name=苏州", {"o2"}, "chain-two-levels-encounter"),
    case("Encounter?subject:Patient.organization.name=昆山", {"e1"}, "chain-encounter-subject-org"),
    case("Observation?subject:Patient.name=张&code=9999-9", {"o4"}, "chain-and-plain"),
    case("Patient?_has:Observation:patient:code=1234-5", {"p1", "p3"}, "has-reverse-chain"),
    case("Patient?_has:Observation:subject:code=9999-9", {"p1", "p2"}, "has-subject"),
    case("Patient?_has:Observation:patient:code=1234-5&_has:Observation:patient:code=9999-9", {"p1"}, "has-and"),
    case("Organization?_has:Patient:organization:name=张", {"org1"}, "has-organization"),
]


@pytest.mark.parametrize(("path", "expected"), CHAIN_CASES)
def test_chains_find_exactly(fhir: httpx.Client, path: str, expected: set[str]) -> None:
    """Chained (``a.b=``) and reverse-chained (``_has``) parameters match exactly the expected resources."""
    load(fhir, RESOURCES)
    found = ids(search(fhir, f"/{path}"))
    assert len(found) == len(set(found)), found
    assert set(found) == expected


def _included(path: str, fhir: httpx.Client) -> tuple[dict, list[str]]:
    bundle = search(fhir, path)
    included = refs(bundle, "include")
    assert len(included) == len(set(included)), f"an included resource appears twice: {included}"
    return bundle, included


def test_include_adds_each_referenced_patient_once(fhir: httpx.Client) -> None:
    """``_include=Observation:subject`` adds every subject once, marked ``include``; total counts matches only."""
    load(fhir, RESOURCES)
    bundle, included = _included("/Observation?_include=Observation:subject", fhir)
    assert set(ids(bundle)) == {"o1", "o2", "o3", "o4"}
    assert set(included) == {"Patient/p1", "Patient/p2", "Patient/p3"}
    assert bundle["total"] == 4
    typed, included = _included("/Observation?code=1234-5&_include=Observation:subject:Patient", fhir)
    assert set(ids(typed)) == {"o1", "o3"} and typed["total"] == 2
    assert set(included) == {"Patient/p1", "Patient/p3"}


def test_include_follows_each_page(fhir: httpx.Client) -> None:
    """On each page, ``_include`` adds the resources referenced by that page's matches."""
    load(fhir, RESOURCES)
    first = search(fhir, "/Observation", {"_include": "Observation:subject", "_sort": "_id", "_count": "2"})
    assert ids(first) == ["o1", "o2"]
    assert sorted(refs(first, "include")) == ["Patient/p1", "Patient/p2"]
    second = search(fhir, next(link["url"] for link in first["link"] if link["relation"] == "next"))
    assert ids(second) == ["o3", "o4"]
    assert sorted(refs(second, "include")) == ["Patient/p1", "Patient/p3"]


def test_include_wildcard_follows_every_reference(fhir: httpx.Client) -> None:
    """``_include=*`` adds every resource the matches reference."""
    load(fhir, RESOURCES)
    _, included = _included("/Observation?code=1234-5&_include=*", fhir)
    assert set(included) == {"Patient/p1", "Patient/p3", "Encounter/e1"}


def test_revinclude_adds_referring_resources(fhir: httpx.Client) -> None:
    """``_revinclude=Observation:subject`` on a Patient search adds that patient's observations."""
    load(fhir, RESOURCES)
    bundle, included = _included("/Patient?_id=p1&_revinclude=Observation:subject", fhir)
    assert ids(bundle) == ["p1"]
    assert set(included) == {"Observation/o1", "Observation/o4"}


def test_include_iterate_follows_included_resources(fhir: httpx.Client) -> None:
    """Only ``_include:iterate`` follows references of included resources (Observation → Patient → Organization)."""
    load(fhir, RESOURCES)
    query = "/Observation?code=1234-5&_include=Observation:subject"
    _, iterated = _included(f"{query}&_include:iterate=Patient:organization", fhir)
    assert set(iterated) == {"Patient/p1", "Patient/p3", "Organization/org1"}
    _, plain = _included(f"{query}&_include=Patient:organization", fhir)
    assert set(plain) == {"Patient/p1", "Patient/p3"}


def test_chain_and_include_together(fhir: httpx.Client) -> None:
    """A chained criterion and an ``_include`` in one search."""
    load(fhir, RESOURCES)
    bundle, included = _included("/Observation?subject:Patient.name=李&_include=Observation:encounter", fhir)
    assert ids(bundle) == ["o2"]
    assert included == ["Encounter/e2"]


SORT_PATIENTS = [
    ("s1", "Adams", "1980-01-01"),
    ("s2", "Baker", "1970-01-01"),
    ("s3", "Adams", "1990-01-01"),
    ("s4", "Baker", None),
    ("s5", "Clark", "1975-01-01"),
]


def _load_sort_patients(fhir: httpx.Client) -> None:
    """One PUT each, in order, so ``_lastUpdated`` follows s1..s5."""
    for pid, family, birth in SORT_PATIENTS:
        resource: dict = {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}
        if birth:
            resource["birthDate"] = birth
        assert fhir.put(f"/Patient/{pid}", json=resource).status_code == 201
        time.sleep(0.01)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        pytest.param("birthdate", ["s2", "s5", "s1", "s3", "s4"], id="ascending-missing-last"),
        pytest.param("-birthdate", ["s3", "s1", "s5", "s2", "s4"], id="descending-missing-last"),
        pytest.param("family,-birthdate", ["s3", "s1", "s2", "s4", "s5"], id="two-keys"),
        pytest.param("_lastUpdated", ["s1", "s2", "s3", "s4", "s5"], id="last-updated"),
        pytest.param("-_lastUpdated", ["s5", "s4", "s3", "s2", "s1"], id="last-updated-descending"),
    ],
)
def test_sort_orders_matches(fhir: httpx.Client, sort: str, expected: list[str]) -> None:
    """``_sort`` orders the matches; resources without the sort value come last.

    With ``_total=none`` the server reads the sort index in order (its plan for large
    result sets); counted, it sorts the few matches: both orders must agree.
    """
    _load_sort_patients(fhir)
    assert ids(search(fhir, "/Patient", {"_sort": sort})) == expected
    assert ids(search(fhir, "/Patient", {"_sort": sort, "_total": "none"})) == expected


@pytest.mark.parametrize("total", ["accurate", "none"])
def test_sort_with_a_criterion(fhir: httpx.Client, total: str) -> None:
    """A filtered sort (few matches are sorted after the index lookup; many read the sort index in order)."""
    _load_sort_patients(fhir)
    query = {"name:missing": "false", "_sort": "-birthdate", "_total": total}
    assert ids(search(fhir, "/Patient", query)) == ["s3", "s1", "s5", "s2", "s4"]
    query = {"family": "a,b", "_sort": "birthdate", "_total": total, "_count": "2"}
    first = search(fhir, "/Patient", query)
    second = search(fhir, next(link["url"] for link in first["link"] if link["relation"] == "next"))
    assert ids(first) + ids(second) == ["s2", "s1", "s3", "s4"]


@pytest.mark.parametrize("total", ["accurate", "none"])
def test_sort_applies_across_pages(fhir: httpx.Client, total: str) -> None:
    """The sort order holds over page boundaries, not only within a page."""
    _load_sort_patients(fhir)
    first = search(fhir, "/Patient", {"_sort": "-birthdate", "_count": "2", "_total": total})
    second = search(fhir, next(link["url"] for link in first["link"] if link["relation"] == "next"))
    third = search(fhir, next(link["url"] for link in second["link"] if link["relation"] == "next"))
    assert ids(first) + ids(second) + ids(third) == ["s3", "s1", "s5", "s2", "s4"]


def _tags(resource: dict) -> set[tuple[str, str]]:
    return {(t.get("system"), t.get("code")) for t in resource.get("meta", {}).get("tag", [])}


def _only(fhir: httpx.Client, query: str) -> dict:
    bundle = search(fhir, f"/Patient?_id=p1&{query}")
    [resource] = entries(bundle)
    return resource


def test_elements_keeps_only_the_named_elements(fhir: httpx.Client) -> None:
    """``_elements=identifier`` returns id, meta and identifier only, tagged SUBSETTED."""
    load(fhir, RESOURCES)
    resource = _only(fhir, "_elements=identifier")
    assert set(resource) <= {"resourceType", "id", "meta", "identifier"}
    assert resource["identifier"] == [{"system": MRN, "value": "P1"}] and resource["id"] == "p1"
    assert SUBSETTED in _tags(resource)
    two = _only(fhir, "_elements=name,birthDate")
    assert set(two) <= {"resourceType", "id", "meta", "name", "birthDate"} and "name" in two and "birthDate" in two
    assert "contact" in fhir.get("/Patient/p1").json()  # the stored resource is untouched


def test_summary_count_gives_total_only(fhir: httpx.Client) -> None:
    """``_summary=count`` returns the number of matches and no entries."""
    load(fhir, RESOURCES)
    bundle = search(fhir, "/Patient", {"_summary": "count"})
    assert bundle["total"] == 3
    assert not bundle.get("entry")
    assert search(fhir, "/Observation", {"code": "1234-5", "_summary": "count"})["total"] == 2


def test_summary_true_keeps_summary_elements(fhir: httpx.Client) -> None:
    """``_summary=true`` keeps the summary elements of Patient and drops text, contact, communication."""
    load(fhir, RESOURCES)
    resource = _only(fhir, "_summary=true")
    for kept in ("name", "identifier", "birthDate", "gender", "managingOrganization"):
        assert kept in resource, kept
    for dropped in ("text", "contact", "communication", "maritalStatus"):
        assert dropped not in resource, dropped
    assert SUBSETTED in _tags(resource)


def test_summary_data_and_text(fhir: httpx.Client) -> None:
    """``_summary=data`` drops only the narrative; ``_summary=text`` keeps only the narrative (and id, meta)."""
    load(fhir, RESOURCES)
    data = _only(fhir, "_summary=data")
    assert "text" not in data
    assert {"name", "contact", "communication", "maritalStatus"} <= set(data)
    assert SUBSETTED in _tags(data)
    text = _only(fhir, "_summary=text")
    assert set(text) <= {"resourceType", "id", "meta", "text"}
    assert text["text"]["div"] == P1_FULL["text"]["div"]
    full = _only(fhir, "_summary=false")
    assert {"text", "contact", "name"} <= set(full) and SUBSETTED not in _tags(full)
