"""Display masks of ID numbers, phone numbers and names, consistent with the log mask."""

from __future__ import annotations

import pytest

from hub.privacy import mask_id_number, mask_name, mask_phone, mask_text

# The example number of GB 11643-1999 (Beijing Chaoyang, born 1949-12-31, check digit X).
GB_EXAMPLE = "11010519491231002X"


def test_id_numbers_keep_region_and_tail() -> None:
    assert mask_id_number(GB_EXAMPLE) == "110105********002X"
    assert mask_id_number("110105194912310021") == "110105********0021"
    assert mask_id_number(" 110105 19491231 002X ") == "110105********002X"
    assert mask_id_number("110105491231002") == "110105******002"  # legacy 15 digits


def test_id_number_mask_matches_the_log_mask() -> None:
    for value in (GB_EXAMPLE, "110105491231002"):
        assert mask_id_number(value) == mask_text(value)


@pytest.mark.parametrize(("value", "masked"), [("E12345678", "*******78"), ("123", "***"), ("", "")])
def test_other_identifier_shapes_hide_most(value: str, masked: str) -> None:
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+8613812345678", "+86138****5678"),
        ("+86 138-1234-5678", "+86 138****5678"),
        ("0086 13812345678", "0086 138****5678"),
        ("138 1234 5678", "138****5678"),
        ("0512-65123456", "0512-****3456"),
        ("010-12345678", "010-****5678"),
        ("(021)6123456", "021-***3456"),
        ("051265123456", "0512-****3456"),
        ("02012345678", "020-****5678"),
        ("65123456", "****3456"),
        ("400-123-4567", "******4567"),
        ("12345", "*****"),
    ],
)
def test_phone_numbers(value: str, masked: str) -> None:
    assert mask_phone(value) == masked


def test_mobile_mask_matches_the_log_mask() -> None:
    for value in ("13812345678", "+8613812345678", "+86 13812345678"):
        assert mask_phone(value) == mask_text(value)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("王小明", "王*明"),
        ("欧阳小明", "欧**明"),
        ("李", "*"),
        ("买买提·艾力", "买**·*力"),
        (" 王小明 ", "王*明"),
        ("Zhang San", "Z***"),
        ("li", "l***"),
        ("", ""),
    ],
)
def test_names(name: str, masked: str) -> None:
    assert mask_name(name) == masked
