"""GB 11643-1999 citizen ID numbers, checked against the standard's own examples."""

from __future__ import annotations

from datetime import date

import pytest

from hub.privacy.citizen_id import birth_date_of, check_character, citizen_id_problem, sex_of


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014"])
def test_the_standards_examples_are_valid(number: str) -> None:
    assert citizen_id_problem(number) is None
    assert check_character(number[:17]) == number[17]


def test_what_the_number_encodes() -> None:
    assert birth_date_of("11010519491231002X") == date(1949, 12, 31) and sex_of("11010519491231002X") == "2"
    assert birth_date_of("440524188001010014") == date(1880, 1, 1) and sex_of("440524188001010014") == "1"
    assert birth_date_of("110105491231002") == date(1949, 12, 31)


@pytest.mark.parametrize(("number", "reason"), [
    ("110105194912310021", "check character"),
    ("11010519491231002x", None),          # a lower-case check character is the same number
    ("1101051949123100", "18 characters"),
    ("11010519491331002X", "birth date"),
    ("01010519491231002X", "address code"),
    ("1101051949123100AX", "17 digits"),
    ("110105491231002", None),             # a valid legacy 15-digit number
    ("11010549123100A", "digits only"),
])
def test_invalid_numbers_say_why_without_repeating_them(number: str, reason: str | None) -> None:
    problem = citizen_id_problem(number)
    if reason is None:
        assert problem is None
    else:
        assert problem is not None and reason in problem and number not in problem
