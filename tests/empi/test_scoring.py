"""Comparison levels, the deterministic ID rule, the guards against linking family members, rules as data."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hub.empi.features import Features
from hub.empi.normalize import fuzzy_pinyin, normalize_name
from hub.empi.rules import DEFAULT_RULES, load_rules, rules_from
from hub.empi.scoring import AUTO_LINK, CERTAIN, NO_MATCH, PROBABLE, REVIEW, birth_level, compare, name_level
from hub.errors import InvalidRequest

RULES = load_rules()


def person(name: str = "张伟", birth: str = "1980-05-12", sex: str = "1", id_hash: str = "", phones: tuple = (),
           address: str = "") -> Features:
    normalized = normalize_name(name)
    return Features(name=normalized, pinyin=fuzzy_pinyin(normalized), birth_date=birth, sex=sex, id_hash=id_hash,
                    phones=phones, address=address)


@pytest.mark.parametrize(("a", "b", "level"), [
    ("张丽", "张丽", "exact"),
    ("张丽", "张莉", "homophone"),
    ("曾乐", "曾悦", "homophone"),      # 乐 reads le or yue
    ("刘宁", "牛林", "fuzzy-pinyin"),
    ("王明", "王朋", "one-character"),
    ("王芳", "李强", "different"),
])
def test_name_levels(a: str, b: str, level: str) -> None:
    x, y = normalize_name(a), normalize_name(b)
    assert name_level(x, y, fuzzy_pinyin(x), fuzzy_pinyin(y), RULES) == level


@pytest.mark.parametrize(("a", "b", "level"), [
    ("1980-05-12", "1980-05-12", "exact"),
    ("1980-05-12", "1980-05-21", "transposed"),   # digits swapped
    ("1980-05-12", "1980-12-05", "transposed"),   # day and month swapped
    ("1980-05-12", "1980-05-13", "transposed"),   # one digit off
    ("1980-05-12", "1980-09-30", "same-year"),
    ("1980-05-12", "1975-01-30", "different"),
])
def test_birth_date_levels(a: str, b: str, level: str) -> None:
    assert birth_level(a, b) == level


def test_same_valid_id_number_is_certain() -> None:
    a = person(id_hash="h1")
    b = person(name="张卫", id_hash="h1", address="别处")
    result = compare(a, b, RULES)
    assert (result.decision, result.grade, result.deterministic) == (AUTO_LINK, CERTAIN, True)


def test_same_id_number_with_a_conflicting_birth_date_goes_to_review() -> None:
    result = compare(person(id_hash="h1"), person(id_hash="h1", birth="1981-05-12"), RULES)
    assert result.decision == REVIEW and "birth date" in result.held_back


def test_same_id_number_with_conflicting_sex_goes_to_review() -> None:
    result = compare(person(id_hash="h1"), person(id_hash="h1", sex="2"), RULES)
    assert result.decision == REVIEW and "sex" in result.held_back


def test_strong_demographics_link_automatically() -> None:
    a = person(phones=("p1",), address="江苏省昆山市玉山镇人民路1号")
    b = person(name="張偉", phones=("p1",), address="昆山市玉山镇人民路1号")
    result = compare(a, b, RULES)
    assert result.decision == AUTO_LINK and result.grade == PROBABLE and result.score >= RULES.auto_link


def test_twins_sharing_everything_but_the_given_name_are_never_linked_automatically() -> None:
    home = dict(birth="2015-03-01", phones=("p1",), address="江苏省昆山市玉山镇人民路1号")
    result = compare(person(name="王明", **home), person(name="王朋", **home), RULES)
    assert result.score >= RULES.auto_link  # the numbers alone would link them
    assert result.decision == REVIEW and "family" in result.held_back


def test_different_valid_id_numbers_are_never_linked_automatically() -> None:
    home = dict(phones=("p1",), address="江苏省昆山市玉山镇人民路1号")
    result = compare(person(id_hash="h1", **home), person(id_hash="h2", **home), RULES)
    assert result.decision != AUTO_LINK


def test_strangers_do_not_match() -> None:
    result = compare(person(), person(name="李娜", birth="1992-11-03", sex="2"), RULES)
    assert result.decision == NO_MATCH


def test_missing_fields_count_nothing() -> None:
    result = compare(person(birth=""), person(birth=""), RULES)
    assert next(f for f in result.fields if f.field == "birth_date").level is None
    assert next(f for f in result.fields if f.field == "birth_date").weight == 0


def test_probability_is_calibrated_to_the_thresholds() -> None:
    assert RULES.probability(RULES.review) == pytest.approx(0.5)
    assert RULES.probability(RULES.auto_link) == pytest.approx(0.95)
    assert RULES.probability(-1000) < 0.001 and RULES.probability(1000) > 0.999


def test_region_overrides_apply(tmp_path) -> None:
    text = DEFAULT_RULES.read_text(encoding="utf-8").replace("regions: {}", 'regions:\n  "320583":\n    thresholds: {auto_link: 40}')
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    strict = load_rules(str(path), "320583")
    assert strict.auto_link == 40 and strict.review == RULES.review
    a = person(phones=("p1",))
    assert RULES.auto_link <= compare(a, replace(a), RULES).score < 40
    assert compare(a, replace(a), RULES).decision == AUTO_LINK
    assert compare(a, replace(a), strict).decision == REVIEW
    assert load_rules(str(path)).auto_link == RULES.auto_link


@pytest.mark.parametrize(("change", "message"), [
    ({"thresholds": {"auto_link": 10, "review": 20}}, "review must be below"),
    ({"fields": {"name": {"exact": {"m": 1.2, "u": 0.1}}}}, "strictly between 0 and 1"),
    ({"fields": {"sex": {"same": {"m": 0.9}}}}, "fields.sex.same needs m and u"),
    ({"auto_link_min_name": "telepathy"}, "auto_link_min_name"),
])
def test_bad_rules_are_refused_with_the_reason(change: dict, message: str) -> None:
    import yaml
    data = yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            for field, levels in value.items():
                if isinstance(levels, dict) and isinstance(data[key].get(field), dict):
                    data[key][field] = {**data[key][field], **levels}
                else:
                    data[key][field] = levels
        else:
            data[key] = value
    with pytest.raises(InvalidRequest, match=message):
        rules_from(data)


def test_unknown_region_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="no overrides for region"):
        load_rules("", "999999")


def test_addresses_compare_below_the_district() -> None:
    from hub.empi.normalize import normalize_address
    from hub.empi.scoring import address_level

    def level(a: str, b: str) -> str:
        return address_level(normalize_address(a), normalize_address(b), RULES)

    assert level("江苏省苏州市昆山市玉山镇人民路1号", "昆山市玉山镇人民路1号") == "same"
    assert level("江苏省苏州市昆山市玉山镇", "江苏省苏州市昆山市周市镇") == "different"  # one city, two towns
    assert level("江苏省苏州市昆山市玉山镇", "昆山市玉山镇") == "similar"  # a town alone confirms little


def test_namesakes_born_the_same_day_with_different_phones_are_not_linked_automatically() -> None:
    # 张伟 is a common name: a shared birthday in a region of a million happens; different phones and
    # no confirming ID number or street address keep it in front of a reviewer
    a = person(phones=("p1",), address="江苏省苏州市昆山市玉山镇")
    b = person(phones=("p2",), address="江苏省苏州市昆山市玉山镇")
    result = compare(a, b, RULES)
    assert result.decision == REVIEW and "phones differ" in result.held_back
    assert compare(a, replace(b, phones=()), RULES).decision == AUTO_LINK
