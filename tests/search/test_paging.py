"""Paging of searchset Bundles, totals, self links, error handling of bad parameters, POST _search, system search."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from hub.config import Settings
from hub.store.database import Database
from tests.conftest import assert_outcome, fhir_client, running_server
from tests.search.support import all_pages, base_url, ids, latest, link, load, refs, search, searchset


def _patients(count: int, prefix: str = "p", first_year: int = 1950) -> list[dict]:
    """``count`` patients ``p00``.. with distinct birth dates; every other one is female."""
    return [
        {"resourceType": "Patient", "id": f"{prefix}{i:02d}", "name": [{"family": "Smith" if i % 3 else "Jones"}],
         "gender": "female" if i % 2 else "male", "birthDate": f"{first_year + i}-01-01"}
        for i in range(count)
    ]


def _page_ids(pages: list[dict]) -> list[str]:
    return [pid for page in pages for pid in ids(page)]


@pytest.fixture(scope="module")
def small_server(settings: Settings, database: Database) -> Iterator[str]:
    """A second hub on the same database with a default page size of 4 and a cap of 6."""
    small = dataclasses.replace(settings, default_page_size=4, max_page_size=6)
    with running_server(small, database) as url:
        yield url


@pytest.fixture
def small(small_server: str, database: Database) -> Iterator[httpx.Client]:
    with fhir_client(small_server) as client:
        yield client


def test_default_page_size_is_20(fhir: httpx.Client) -> None:
    """Without ``_count`` a page holds 20 matches and links to the next page."""
    load(fhir, _patients(25))
    bundle = search(fhir, "/Patient")
    assert len(ids(bundle)) == 20
    assert bundle["total"] == 25
    assert link(bundle, "next") is not None


def test_count_is_capped_by_the_configured_maximum(small: httpx.Client) -> None:
    """The configured default page size applies, and ``_count`` above the maximum is cut to it."""
    load(small, _patients(10))
    assert len(ids(search(small, "/Patient"))) == 4
    first = search(small, "/Patient", {"_count": "50"})
    assert len(ids(first)) == 6
    assert sorted(_page_ids(all_pages(small, first))) == [f"p{i:02d}" for i in range(10)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, {f"p{i:02d}" for i in range(23)}, id="default-order"),
        pytest.param({"_sort": "-birthdate"}, {f"p{i:02d}" for i in range(23)}, id="sorted"),
        pytest.param({"gender": "female"}, {f"p{i:02d}" for i in range(1, 23, 2)}, id="filtered"),
    ],
)
def test_next_links_visit_every_match_once(fhir: httpx.Client, params: dict, expected: set[str]) -> None:
    """Following ``next`` links returns every match exactly once; only the last page has no ``next``."""
    load(fhir, _patients(23))
    pages = all_pages(fhir, search(fhir, "/Patient", {**params, "_count": "5"}))
    seen = _page_ids(pages)
    assert len(seen) == len(set(seen)), seen
    assert set(seen) == expected
    assert all(len(ids(page)) == 5 for page in pages[:-1])
    assert len(pages) == (len(expected) + 4) // 5
    if "_sort" in params:
        assert seen == sorted(seen, reverse=True)  # ids follow the birth dates


def test_previous_link_returns_the_same_page(fhir: httpx.Client) -> None:
    """The ``previous`` link of page 2 gives page 1 again; page 1 has no ``previous``."""
    load(fhir, _patients(12))
    first = search(fhir, "/Patient", {"_count": "5", "_sort": "birthdate"})
    assert link(first, "previous") is None
    second = searchset(fhir.get(link(first, "next")))
    assert set(ids(second)).isdisjoint(ids(first))
    back = searchset(fhir.get(link(second, "previous")))
    assert ids(back) == ids(first)
    third = searchset(fhir.get(link(second, "next")))
    assert ids(searchset(fhir.get(link(third, "previous")))) == ids(second)


@pytest.mark.parametrize("sort", [None, "-birthdate", "birthdate"])
def test_paging_is_stable_while_resources_are_added(fhir: httpx.Client, sort: str | None) -> None:
    """Resources created between page requests cause no duplicates and no skipped pre-existing matches."""
    originals = _patients(12)
    load(fhir, originals)
    params = {"_count": "5", **({"_sort": sort} if sort else {})}
    pages = [search(fhir, "/Patient", params)]
    # new patients sorting before, after and amid the existing ones
    load(fhir, _patients(2, prefix="new-a", first_year=2000) + _patients(2, prefix="new-b", first_year=1900)
         + _patients(1, prefix="new-c", first_year=1955))
    pages += all_pages(fhir, searchset(fhir.get(link(pages[0], "next"))))
    seen = _page_ids(pages)
    assert len(seen) == len(set(seen)), f"duplicates: {seen}"
    original_ids = [p["id"] for p in originals]
    assert sorted(pid for pid in seen if pid in original_ids) == original_ids
    if sort:
        in_order = [pid for pid in seen if pid in original_ids]
        assert in_order == sorted(original_ids, reverse=sort.startswith("-"))


def test_total_accurate_and_none(fhir: httpx.Client) -> None:
    """``_total=accurate`` reports the number of matches; ``_total=none`` reports none; ``_count=0`` only counts."""
    load(fhir, _patients(7))
    accurate = search(fhir, "/Patient", {"gender": "female", "_total": "accurate", "_count": "2"})
    assert accurate["total"] == 3 and len(ids(accurate)) == 2
    none = search(fhir, "/Patient", {"gender": "female", "_total": "none", "_count": "2"})
    assert "total" not in none and len(ids(none)) == 2
    counted = search(fhir, "/Patient", {"gender": "female", "_count": "0"})
    assert counted["total"] == 3 and not counted.get("entry")


def _query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_self_link_reflects_the_parameters_used(fhir: httpx.Client) -> None:
    """The ``self`` link names the type and the search parameters that took effect."""
    load(fhir, _patients(4))
    bundle = search(fhir, "/Patient", {"family": "smith", "_count": "2", "_sort": "birthdate"})
    url = link(bundle, "self")
    assert url is not None and urlsplit(url).path.endswith("/fhir/Patient")
    assert url.startswith(base_url(fhir))
    query = _query_of(url)
    assert {("family", "smith"), ("_count", "2"), ("_sort", "birthdate")} <= set(query)
    assert ids(searchset(fhir.get(url))) == ids(bundle)


def test_unknown_parameter_is_refused(fhir: httpx.Client) -> None:
    """An unknown search parameter is a 400 OperationOutcome that names it (not a silent match-all)."""
    load(fhir, _patients(3))
    assert_outcome(fhir.get("/Patient", params={"foo": "bar"}), 400, contains="foo")
    assert_outcome(fhir.get("/Patient", params={"family": "smith", "nosuch:exact": "x"}), 400, contains="nosuch")
    strict = fhir.get("/Patient", params={"foo": "bar"}, headers={"Prefer": "handling=strict"})
    assert_outcome(strict, 400, contains="foo")


def test_lenient_handling_ignores_unknown_parameters(fhir: httpx.Client) -> None:
    """With ``Prefer: handling=lenient`` the unknown parameter is ignored and left out of the self link."""
    load(fhir, _patients(6))
    response = fhir.get("/Patient", params={"foo": "bar", "family": "jones"}, headers={"Prefer": "handling=lenient"})
    bundle = searchset(response)
    assert set(ids(bundle)) == {"p00", "p03"}
    query = _query_of(link(bundle, "self") or "")
    assert ("family", "jones") in query
    assert all(name != "foo" for name, _ in query)


def bad(path: str, valid: str, named: str, name: str) -> object:
    return pytest.param(path, valid, named, id=name)


@pytest.mark.parametrize(
    ("path", "valid", "named"),
    [
        bad("Patient?birthdate=1970-13", "Patient?birthdate=1970-12", "birthdate", "bad-month"),
        bad("Patient?birthdate=xx1970", "Patient?birthdate=ge1970", "birthdate", "bad-prefix"),
        bad("Patient?birthdate=1970-02-30", "Patient?birthdate=1970-02-28", "birthdate", "bad-day"),
        bad("RiskAssessment?probability=abc", "RiskAssessment?probability=0.5", "probability", "bad-number"),
        bad("Observation?value-quantity=abc", "Observation?value-quantity=5.4", "value-quantity", "bad-quantity"),
        bad("Observation?value-quantity=five|http://unitsofmeasure.org|mg",
            "Observation?value-quantity=5|http://unitsofmeasure.org|mg", "value-quantity", "bad-quantity-value"),
        bad("Observation?code-value-quantity=http://loinc.org|8480-6",
            "Observation?code-value-quantity=http://loinc.org|8480-6$gt100", "code-value-quantity",
            "composite-missing-part"),
        bad("Patient?gender.name=x", "Patient?organization.name=x", "gender", "chain-on-token"),
        bad("Observation?subject:Patient.nosuch=x", "Observation?subject:Patient.name=x", "nosuch",
            "chain-unknown-target-param"),
        bad("Patient?_has:Observation:patient:nosuch=x", "Patient?_has:Observation:patient:code=x", "nosuch",
            "has-unknown-param"),
        bad("Patient?family:nosuchmodifier=x", "Patient?family:exact=x", "family", "unknown-modifier"),
        bad("Patient?_sort=nosuch", "Patient?_sort=family", "nosuch", "sort-unknown"),
        bad("Observation?_include=Observation:nosuch", "Observation?_include=Observation:subject", "nosuch",
            "include-unknown"),
        bad("Patient?_count=abc", "Patient?_count=5", "_count", "bad-count"),
        bad("Patient?_summary=bogus", "Patient?_summary=true", "_summary", "bad-summary"),
        bad("Patient?_total=bogus", "Patient?_total=none", "_total", "bad-total"),
    ],
)
def test_malformed_values_are_400_naming_the_parameter(fhir: httpx.Client, path: str, valid: str, named: str) -> None:
    """A malformed value, modifier, chain, sort or include is a 400 naming the parameter; a valid one works."""
    searchset(fhir.get(f"/{valid}"))
    assert_outcome(fhir.get(f"/{path}"), 400, contains=named)


def test_post_search_with_form_body_equals_get(fhir: httpx.Client) -> None:
    """``POST [type]/_search`` with a form body finds what the same GET finds."""
    load(fhir, _patients(9))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    expected = set(ids(search(fhir, "/Patient", {"family": "smith", "gender": "female"})))
    assert expected == {"p01", "p05", "p07"}
    posted = fhir.post("/Patient/_search", content="family=smith&gender=female", headers=form)
    assert set(ids(searchset(posted))) == expected
    mixed = fhir.post("/Patient/_search?family=smith", content="gender=female", headers=form)
    assert set(ids(searchset(mixed))) == expected
    assert_outcome(fhir.post("/Patient/_search", content="foo=bar", headers=form), 400, contains="foo")


def test_system_level_search(fhir: httpx.Client) -> None:
    """``GET [base]?_type=…`` searches several types; ``_lastUpdated`` and ``_id`` apply to each."""
    stamp = latest(load(fhir, _patients(3)))
    time.sleep(0.05)
    load(fhir, [
        {"resourceType": "Patient", "id": "late", "gender": "male"},
        {"resourceType": "Observation", "id": "late-obs", "status": "final", "code": {"text": "血糖"},
         "subject": {"reference": "Patient/late"}},
        {"resourceType": "Organization", "id": "late-org", "name": "昆山市中医医院"},
    ])
    base = base_url(fhir)
    recent = searchset(fhir.get(base, params={"_type": "Patient,Observation", "_lastUpdated": f"gt{stamp}"}))
    assert set(refs(recent)) == {"Patient/late", "Observation/late-obs"}
    every_type = searchset(fhir.get(base, params={"_lastUpdated": f"gt{stamp}"}))
    assert set(refs(every_type)) == {"Patient/late", "Observation/late-obs", "Organization/late-org"}
    one = searchset(fhir.get(base, params={"_type": "Patient", "_id": "p01"}))
    assert refs(one) == ["Patient/p01"]
