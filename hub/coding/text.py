"""Text of displays as compared by the hub: width-folded, spaceless, case-folded, and its pinyin.

Chinese displays of the same concept differ in full-/half-width characters, spaces and
brackets (``血红蛋白（HGB）`` and ``血红蛋白(HGB)``); comparisons use :func:`fold`.
Pinyin (via pypinyin) lets a reviewer type ``xhdb`` or ``xuehongdanbai`` for 血红蛋白.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=65_536)
def fold(text: str) -> str:
    """``text`` NFKC-normalized (full-width → half-width), without spaces, case-folded."""
    return _SPACE.sub("", unicodedata.normalize("NFKC", text)).casefold()


@lru_cache(maxsize=65_536)
def pinyin(text: str) -> str:
    """The toneless pinyin of ``text`` run together (other characters kept, folded)."""
    return "".join(lazy_pinyin(fold(text), errors="default"))


@lru_cache(maxsize=65_536)
def initials(text: str) -> str:
    """The pinyin initials of ``text`` (``血常规`` → ``xcg``); other characters kept."""
    return "".join(lazy_pinyin(fold(text), style=Style.FIRST_LETTER, errors="default"))


def bigrams(text: str) -> frozenset[str]:
    """The character bigrams of the folded text (a one-character text is its own gram)."""
    folded = fold(text)
    if len(folded) < 2:
        return frozenset({folded}) if folded else frozenset()
    return frozenset(folded[i:i + 2] for i in range(len(folded) - 1))
