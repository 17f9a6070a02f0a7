"""The catalogue as data and the qualification rules, without a database."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hub.errors import InvalidRequest
from hub.recognition.catalogue import from_json, load_catalogue, parse_text
from hub.recognition.eqa import read_eqa_csv
from hub.recognition.rules import Institution, Rules, result_time, result_year
from tests.recognition.support import CATALOGUE


def test_the_sample_catalogue_loads_with_its_defaults() -> None:
    catalogue, content = load_catalogue(parse_text(CATALOGUE.read_bytes()))
    assert len(catalogue.items) == 22 and catalogue.version == "2026.12"
    glu, wbc, ct = catalogue.items["glu"], catalogue.items["wbc"], catalogue.items["ct-head"]
    assert (glu.validity, glu.scope, glu.rule, glu.price_fen, glu.unit) == (timedelta(days=7), "consortium", "eqa",
                                                                         500, "mmol/L")
    assert wbc.validity == timedelta(hours=72) and wbc.kind == "lab" and wbc.resource_type == "Observation"
    assert (ct.kind, ct.resource_type, ct.rule, ct.min_level, ct.scope) == ("exam", "DiagnosticReport", "level",
                                                                           "secondary", "region")
    assert catalogue.item_for("http://loinc.org", "2345-7") is glu
    assert from_json(content).items == catalogue.items  # the stored form reads back the same


@pytest.mark.parametrize(("entry", "problem"), [
    ({"id": "a", "code": "http://loinc.org|1-8"}, "validity is required"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "2w"}, "validity '2w'"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "0d"}, "validity '0d'"),
    ({"id": "a", "code": "1-8", "validity": "1d"}, "code must be 'system|code'"),
    ({"id": "a b", "code": "http://loinc.org|1-8", "validity": "1d"}, "id must be"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "1d", "scope": "province"}, "scope 'province'"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "1d", "qualification": "level:二甲"},
     "qualification 'level:二甲'"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "1d", "price": "1.005"}, "price '1.005'"),
    ({"id": "a", "code": "http://loinc.org|1-8", "validity": "1d", "colour": "red"}, "unknown field(s) colour"),
])
def test_each_problem_of_an_item_is_named(entry: dict, problem: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        load_catalogue({"version": "1", "items": [entry]})
    assert problem in raised.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidRequest) as raised:
        load_catalogue({"version": "", "items": [
            {"id": "a", "code": "http://loinc.org|1-8", "validity": "1d"},
            {"id": "a", "code": "http://loinc.org|1-8", "validity": "1d"}], "extra": 1})
    message = raised.value.message
    assert "4 problem(s)" in message
    for expected in ("unknown top-level key(s) extra", "version is required", "id 'a' is used twice",
                     "code http://loinc.org|1-8 is already item 'a'"):
        assert expected in message
    with pytest.raises(InvalidRequest, match="not readable YAML"):
        parse_text(b"items: [unclosed")
    with pytest.raises(InvalidRequest, match="must be a mapping"):
        parse_text(b"- a\n- b\n")


def test_level_rules_admit_the_level_and_those_above() -> None:
    catalogue, _content = load_catalogue(parse_text(CATALOGUE.read_bytes()))
    rules = Rules(catalogue, {("lab-1", "glu", 2026): True, ("lab-2", "glu", 2026): False}, {
        org: Institution(org, org, "institution", level, "") for org, level in
        (("h3", "tertiary"), ("h2", "secondary"), ("h1", "primary"), ("chc", "chc"))})
    ct = catalogue.items["ct-head"]
    assert [rules.qualified(ct, org, 2026) for org in ("h3", "h2", "h1", "chc", "unknown")] == [
        True, True, False, False, False]
    glu = catalogue.items["glu"]
    assert [rules.qualified(glu, org, year) for org, year in (("lab-1", 2026), ("lab-1", 2025), ("lab-2", 2026))] \
        == [True, False, False]
    assert result_time({"effectiveDateTime": "2026-03"}).year == 2026 and result_time({}) is None  # type: ignore[union-attr]


def test_quality_control_records_read_from_csv() -> None:
    records = read_eqa_csv("institution,item,year,passed,scheme\norg-a,glu,2026,合格,省临检中心\n"
                           "org-b,glu,2026,false,\n".encode())
    assert [(r["institution"], r["passed"], r["scheme"]) for r in records] == [
        ("org-a", True, "省临检中心"), ("org-b", False, "")]
    with pytest.raises(InvalidRequest, match="lacks the column"):
        read_eqa_csv(b"institution,item\norg-a,glu\n")
    with pytest.raises(InvalidRequest, match="line 2"):
        read_eqa_csv(b"institution,item,year,passed\norg-a,glu,2026,maybe\n")


def test_a_result_counts_in_its_local_year() -> None:
    """Quality control is per calendar year where the result was made: 2026-01-01 03:00 in 昆山 is 2026,
    although it is still 2025 in UTC."""
    assert result_year(result_time({"effectiveDateTime": "2026-01-01T03:00:00+08:00"})) == 2026
    assert result_year(result_time({"issued": "2025-12-31T20:00:00Z"})) == 2026


def test_last_years_round_holds_until_this_years_is_recorded_when_the_item_says_so() -> None:
    document = {"version": "1", "items": [
        {"id": "glu", "code": "http://loinc.org|2345-7", "validity": "7d"},
        {"id": "glu2", "code": "http://loinc.org|14749-6", "validity": "7d", "eqa_valid_years": 2}]}
    catalogue, content = load_catalogue(document)
    assert content["items"][1]["eqa_valid_years"] == 2 and "eqa_valid_years" not in content["items"][0]
    rules = Rules(catalogue, {("lab", "glu", 2025): True, ("lab", "glu2", 2025): True,
                              ("failed", "glu2", 2025): True, ("failed", "glu2", 2026): False})
    glu, glu2 = catalogue.items["glu"], catalogue.items["glu2"]
    assert not rules.qualified(glu, "lab", 2026)  # a pass counts for its own year only
    assert rules.qualified(glu2, "lab", 2026) and not rules.qualified(glu2, "lab", 2028)
    assert not rules.qualified(glu2, "failed", 2026)  # this year's failed round decides
    with pytest.raises(InvalidRequest, match="eqa_valid_years"):
        load_catalogue({"version": "1", "items": [{**document["items"][1], "eqa_valid_years": 9}]})
