"""Normalization of the fields the EMPI compares: names, ID numbers, phones, addresses.

Names: full-width → half-width (NFKC), spaces and the middle dots of minority names removed,
traditional → simplified (OpenCC ``t2s``), pinyin by pypinyin (surnames read as surnames:
单 shàn, 曾 zēng, 区 ōu …) and a "fuzzy" pinyin folding the sounds many regions do not tell
apart (zh/z, ch/c, sh/s, n/l, -ang/-an, -eng/-en, -ing/-in).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc
from pypinyin import Style, lazy_pinyin, pinyin

from hub.fhir.protected import normalize_phone
from hub.privacy.citizen_id import upgrade_to_18

_T2S = opencc.OpenCC("t2s")
#: Separators inside names: spaces, the middle dots of 维吾尔族/藏族 names, hyphens.
_NAME_NOISE = re.compile(r"[\s·•・‧∙⋅．.\-_,，、]+")
_ADDRESS_NOISE = re.compile(r"[\s,，、.。·\-—_()（）#＃]+")

#: Surnames whose surname reading differs from the common reading pypinyin gives.
SURNAME_READINGS: dict[str, str] = {
    "单": "shan", "曾": "zeng", "区": "ou", "仇": "qiu", "解": "xie", "查": "zha", "朴": "piao",
    "乐": "yue", "盖": "ge", "缪": "miao", "覃": "qin", "尉": "yu", "员": "yun", "繁": "po",
    "那": "na", "种": "chong", "秘": "bi", "折": "she", "翟": "zhai", "黑": "he", "重": "chong",
    "长": "chang", "藏": "zang", "沈": "shen", "召": "shao", "万": "wan", "宿": "su", "洗": "xian",
}
#: Two-character surnames (复姓): the first two characters are the surname.
COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "令狐", "夏侯", "轩辕", "端木", "独孤", "南宫", "西门", "百里", "呼延", "万俟", "司空", "澹台",
})

_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"))
_FUZZY_FINALS = (("ang", "an"), ("eng", "en"), ("ing", "in"))


def normalize_name(value: str) -> str:
    """A name as compared: NFKC, simplified characters, without spaces and dots, Latin lower-cased."""
    text = unicodedata.normalize("NFKC", value or "")
    text = _NAME_NOISE.sub("", text)
    return _T2S.convert(text).lower()


def surname_length(name: str) -> int:
    """How many leading characters of a normalized name are its surname (复姓 two)."""
    return 2 if len(name) > 2 and name[:2] in COMPOUND_SURNAMES else 1


@lru_cache(maxsize=200_000)
def name_pinyin(name: str) -> tuple[str, ...]:
    """The toneless pinyin of a normalized name, one syllable per character (surname read as one)."""
    if not name:
        return ()
    syllables = lazy_pinyin(name, style=Style.NORMAL, errors=lambda chars: list(chars))
    if len(syllables) == len(name) and name[0] in SURNAME_READINGS and surname_length(name) == 1:
        syllables[0] = SURNAME_READINGS[name[0]]
    return tuple(syllables)


@lru_cache(maxsize=200_000)
def name_readings(name: str) -> tuple[frozenset[str], ...]:
    """Every reading of every character (多音字), for telling homophones apart from different names."""
    if not name:
        return ()
    readings = pinyin(name, style=Style.NORMAL, heteronym=True, errors=lambda chars: [[c] for c in chars])
    out = [frozenset(r) for r in readings]
    if len(out) == len(name) and name[0] in SURNAME_READINGS:
        out[0] = out[0] | {SURNAME_READINGS[name[0]]}
    return tuple(out)


def fuzzy_syllable(syllable: str) -> str:
    """A syllable with the commonly confused initials and finals folded (``zhang`` → ``zan``)."""
    for long, short in _FUZZY_INITIALS:
        if syllable.startswith(long):
            syllable = short + syllable[len(long):]
            break
    for long, short in _FUZZY_FINALS:
        if syllable.endswith(long):
            return syllable[: -len(long)] + short
    return syllable


def fuzzy_pinyin(name: str) -> str:
    """The folded pinyin of a normalized name, syllables joined by spaces (a blocking and compare key)."""
    return " ".join(fuzzy_syllable(s) for s in name_pinyin(name))


def normalize_address(value: str) -> str:
    """An address as compared: NFKC, simplified, without spaces and punctuation, without a leading 中国."""
    text = _T2S.convert(unicodedata.normalize("NFKC", value or ""))
    text = _ADDRESS_NOISE.sub("", text)
    return text.removeprefix("中华人民共和国").removeprefix("中国")


#: The administrative part that opens most addresses: province, city, district or county (a town's
#: 市 as in 周市镇 is not taken for a city).
_ADMINISTRATIVE = re.compile(
    r"^(?:.{2,8}?(?:省|自治区))?(?:.{2,8}?(?:市|自治州|地区|盟)(?![镇乡]))?(?:.{1,8}?(?:区|县|市|旗)(?![镇乡]))?")


def street_part(address: str) -> str:
    """A normalized address without its province, city and district (``江苏省苏州市昆山市玉山镇人民路1号`` →
    ``玉山镇人民路1号``): what tells two addresses of one city apart."""
    return _ADMINISTRATIVE.sub("", address, count=1)


def normalize_mobile(value: str) -> str | None:
    """An 11-digit mainland mobile number (``+86``/``0086`` removed), or the digits of another phone.

    None when fewer than 7 digits remain or the number is a placeholder (all one digit, 1234567…).
    """
    digits = normalize_phone(value or "")
    if len(digits) < 7 or is_placeholder_phone(digits):
        return None
    return digits


def is_placeholder_phone(digits: str) -> bool:
    """Phones front desks type when the patient has none: one digit repeated, runs, 138/139 + zeros."""
    body = digits[3:] if len(digits) == 11 else digits
    return (
        len(set(digits)) <= 2
        or digits in "012345678901234567890" or digits in "98765432109876543210"
        or set(body) <= {"0"} or set(body) <= {"8"} or set(body) <= {"1"}
    )


def citizen_id_18(value: str) -> str | None:
    """The 18-character form of a valid GB 11643 number (15-digit legacy numbers converted), else None.

    Numbers of one or two repeated digits (111111…, 110000…000X) are placeholders, not identities.
    """
    upgraded = upgrade_to_18(value or "")
    if upgraded is None or len(set(upgraded[:17])) <= 2:
        return None
    return upgraded
