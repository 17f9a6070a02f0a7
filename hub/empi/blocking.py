"""Blocking: the few keys under which a record's likely matches are filed.

A candidate must share at least one key; each key is a 64-bit hash (ID and phone keys hash the
blind indexes, so no key reveals a number). Keys:

- ``id``: the ID number; ``phone``: each phone number;
- ``name+birth``: fuzzy pinyin and birth date (homophones, traditional characters);
- ``birth+sex``: birth date and sex (typos in the name);
- ``name+year`` and ``name+month-day``: fuzzy pinyin and part of the birth date (typed dates).
"""

from __future__ import annotations

from hub.empi.features import Features
from hub.store.search_sql import token_hash as key_hash


def blocking_keys(features: Features) -> list[int]:
    """The blocking keys of a record (none for placeholder identities: they are never matched)."""
    if features.placeholder:
        return []
    keys: set[int] = set()
    if features.id_hash:
        keys.add(key_hash("id", features.id_hash))
    for phone in features.phones:
        keys.add(key_hash("phone", phone))
    birth, pinyin = features.birth_date, features.pinyin
    if birth:
        if pinyin:
            keys.add(key_hash("name+birth", pinyin, birth))
            keys.add(key_hash("name+year", pinyin, birth[:4]))
            keys.add(key_hash("name+month-day", pinyin, birth[5:]))
        if features.sex:
            keys.add(key_hash("birth+sex", birth, features.sex))
    elif pinyin:
        keys.add(key_hash("name", pinyin))
    return sorted(keys)
