"""GB 11643-1999 citizen identity numbers (公民身份号码): structure and check character.

An 18-character number is a 6-digit address code, an 8-digit birth date, a 3-digit
sequence (odd for men, even for women) and an ISO 7064 MOD 11-2 check character
(``0``–``9`` or ``X``). Legacy 15-digit numbers (before 1999) have a 2-digit year and no
check character. Messages never repeat the number.
"""

from __future__ import annotations

from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _birth(text: str) -> date | None:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def citizen_id_problem(value: str, today: date | None = None) -> str | None:
    """Why ``value`` is not a valid GB 11643 number (None when it is)."""
    text = "".join(value.split()).upper()
    if len(text) == 15:
        if not text.isdigit():
            return "a 15-digit ID number must hold digits only"
        return None if _birth("19" + text[6:12]) else "the birth date in the 15-digit ID number is not a date"
    if len(text) != 18:
        return f"an ID number has 18 characters (or 15 for old numbers), not {len(text)}"
    if not text[:17].isdigit() or not (text[17].isdigit() or text[17] == "X"):
        return "an ID number is 17 digits and a check character 0-9 or X"
    if text[0] == "0":
        return "an ID number's address code cannot start with 0"
    birth = _birth(text[6:14])
    if birth is None or birth.year < 1850 or birth > (today or date.today()):
        return "the birth date in the ID number is not a possible date"
    if check_character(text[:17]) != text[17]:
        return "the ID number's check character is wrong (GB 11643 MOD 11-2)"
    return None


def birth_date_of(value: str) -> date | None:
    """The birth date a valid number encodes."""
    text = "".join(value.split()).upper()
    if len(text) == 15:
        return _birth("19" + text[6:12])
    return _birth(text[6:14]) if len(text) == 18 else None


def sex_of(value: str) -> str | None:
    """The GB/T 2261.1 sex the number encodes: ``1`` (odd sequence, male) or ``2`` (even, female)."""
    text = "".join(value.split())
    digit = text[16] if len(text) == 18 else text[14] if len(text) == 15 else ""
    return ("1" if int(digit) % 2 else "2") if digit.isdigit() else None


def upgrade_to_18(value: str) -> str | None:
    """The 18-character form of a valid number: a legacy 15-digit number gets the century ``19``
    before its 2-digit year and a computed check character (GB 11643-1999, 附录); an 18-character
    number comes back normalized. None when the number is not valid.

    ``110105491231002`` → ``11010519491231002X``.
    """
    text = "".join(value.split()).upper()
    if citizen_id_problem(text) is not None:
        return None
    if len(text) == 18:
        return text
    first17 = text[:6] + "19" + text[6:]
    return first17 + check_character(first17)
