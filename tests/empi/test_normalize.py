"""Normalization against the standards' own examples: GB 11643 (18 and 15 digits), mobiles, names, pinyin."""

from __future__ import annotations

import pytest

from hub.empi.golden import luhn_digit, regional_id, regional_id_valid
from hub.empi.normalize import (
    citizen_id_18,
    fuzzy_pinyin,
    is_placeholder_phone,
    name_pinyin,
    normalize_address,
    normalize_mobile,
    normalize_name,
)
from hub.privacy.citizen_id import check_character, upgrade_to_18


def test_gb_11643_example_and_legacy_upgrade() -> None:
    # GB 11643-1999's example: 11010519491231002X (北京市朝阳区, 1949-12-31, sequence 002, check X)
    assert upgrade_to_18("11010519491231002X") == "11010519491231002X"
    assert upgrade_to_18("11010519491231002x") == "11010519491231002X"
    # its 15-digit form: no century, no check character; the upgrade computes the check again
    assert upgrade_to_18("110105491231002") == "11010519491231002X"
    assert upgrade_to_18("110105 4912 31002") == "11010519491231002X"


@pytest.mark.parametrize("number", [
    "110105194912310021",   # wrong check character
    "11010519491331002X",   # month 13
    "110105491331002",      # 15 digits, month 13
    "1101051949123100",     # 16 characters
    "",
])
def test_invalid_numbers_are_not_identities(number: str) -> None:
    assert citizen_id_18(number) is None


def test_placeholder_numbers_are_not_identities() -> None:
    # 111111 19111111 111: a well-formed number (1911-11-11, right check character) front desks type
    placeholder = "11111119111111111" + check_character("11111119111111111")
    assert upgrade_to_18(placeholder) == placeholder
    assert citizen_id_18(placeholder) is None
    assert citizen_id_18("110105491231002") == "11010519491231002X"


@pytest.mark.parametrize(("written", "normalized"), [
    ("+86 138-1234-5678", "13812345678"),
    ("0086 13812345678", "13812345678"),
    ("8613812345678", "13812345678"),
    ("138 1234 5678", "13812345678"),
    ("0512-57301234", "051257301234"),
])
def test_mobiles_lose_the_country_code(written: str, normalized: str) -> None:
    assert normalize_mobile(written) == normalized


@pytest.mark.parametrize("placeholder", ["00000000000", "11111111111", "13800000000", "12345678901", "123456"])
def test_placeholder_phones_are_ignored(placeholder: str) -> None:
    assert normalize_mobile(placeholder) is None or is_placeholder_phone(placeholder)
    assert normalize_mobile(placeholder) is None


@pytest.mark.parametrize(("written", "normalized"), [
    ("張偉", "张伟"),                  # traditional → simplified
    ("张　伟", "张伟"),                # full-width space
    ("张 伟 ", "张伟"),
    ("阿依古丽·买买提", "阿依古丽买买提"),  # the middle dot of Uyghur names
    ("阿依古丽•买买提", "阿依古丽买买提"),
    ("ＺＨＡＮＧ　Ｗｅｉ", "zhangwei"),      # full-width Latin
    ("鄭麗華", "郑丽华"),
])
def test_names(written: str, normalized: str) -> None:
    assert normalize_name(written) == normalized


def test_surnames_read_as_surnames() -> None:
    assert name_pinyin("单田芳")[0] == "shan"
    assert name_pinyin("曾志伟")[0] == "zeng"
    assert name_pinyin("解缙")[0] == "xie"
    assert name_pinyin("区志明")[0] == "ou"
    assert name_pinyin("乐嘉")[0] == "yue"


def test_fuzzy_pinyin_folds_the_sounds_regions_confuse() -> None:
    assert fuzzy_pinyin("张晶") == fuzzy_pinyin("赞金")         # zh/z, -ing/-in
    assert fuzzy_pinyin("刘宁") == fuzzy_pinyin("牛林")         # n/l, -ing/-in
    assert fuzzy_pinyin("王芳") != fuzzy_pinyin("王刚")


def test_addresses() -> None:
    assert normalize_address("中国 江苏省昆山市, 玉山镇 人民路１号") == "江苏省昆山市玉山镇人民路1号"


def test_regional_identifier_has_a_luhn_check_digit() -> None:
    assert luhn_digit("7992739871") == "3"  # ISO/IEC 7812's example
    number = regional_id("320583", 42)
    assert number == "3205830000000042" + luhn_digit("3205830000000042")
    assert len(number) == 17 and regional_id_valid(number)
    assert not regional_id_valid(number[:-1] + str((int(number[-1]) + 1) % 10))
