"""Comparing two patients: the agreement level of each field, the Fellegi–Sunter score, the decision.

The deterministic rule comes first: the same valid GB 11643 number is the same person
(grade *certain*), unless the two records disagree on birth date or sex (then review).
Otherwise the score is the sum of the field weights, and the thresholds decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.fuzz import ratio

from hub.empi.features import Features
from hub.empi.normalize import name_readings, street_part
from hub.empi.rules import LEVELS, MatchRules

#: Decisions: link automatically, queue for review, keep apart.
AUTO_LINK, REVIEW, NO_MATCH = "auto-link", "review", "no-match"
#: Match grades (FHIR match-grade extension codes).
CERTAIN, PROBABLE, POSSIBLE, CERTAINLY_NOT = "certain", "probable", "possible", "certainly-not"


@dataclass(frozen=True)
class FieldComparison:
    """One field of a pair: its agreement level and weight (``level`` None when a side lacks it)."""

    field: str
    level: str | None
    weight: float


@dataclass(frozen=True)
class Comparison:
    """The comparison of a pair of records."""

    fields: tuple[FieldComparison, ...]
    score: float
    decision: str
    grade: str
    #: Why the rules kept an otherwise high score from linking automatically.
    held_back: str = ""
    deterministic: bool = False

    def level(self, name: str) -> str | None:
        """The agreement level of field ``name``."""
        return next((f.level for f in self.fields if f.field == name), None)

    def as_json(self) -> dict[str, object]:
        """JSON form (what agrees and what does not; no values)."""
        return {
            "score": round(self.score, 2), "decision": self.decision, "grade": self.grade,
            "deterministic": self.deterministic, "held_back": self.held_back,
            "fields": [{"field": f.field, "level": f.level, "weight": round(f.weight, 2)} for f in self.fields],
        }


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def name_level(a: str, b: str, pinyin_a: str, pinyin_b: str, rules: MatchRules) -> str:
    """How close two normalized names are."""
    if a == b:
        return "exact"
    if len(a) == len(b):
        readings_a, readings_b = name_readings(a), name_readings(b)
        if len(readings_a) == len(readings_b) == len(a) and all(x & y for x, y in zip(readings_a, readings_b, strict=True)):
            return "homophone"
    if pinyin_a and pinyin_a == pinyin_b:
        return "fuzzy-pinyin"
    if len(a) == len(b) >= 2 and sum(x != y for x, y in zip(a, b, strict=True)) == 1:
        return "one-character"
    if pinyin_a and pinyin_b and JaroWinkler.similarity(pinyin_a, pinyin_b) >= rules.similar_jaro_winkler:
        return "similar"
    return "different"


def birth_level(a: str, b: str) -> str:
    """How close two ISO birth dates are: a typed date's usual errors count as ``transposed``."""
    if a == b:
        return "exact"
    digits_a, digits_b = a.replace("-", ""), b.replace("-", "")
    if len(digits_a) == len(digits_b) == 8:
        if Levenshtein.distance(digits_a, digits_b) == 1:
            return "transposed"
        differing = [i for i in range(8) if digits_a[i] != digits_b[i]]
        if len(differing) == 2 and differing[1] == differing[0] + 1 and \
                digits_a[differing[0]] == digits_b[differing[1]] and digits_a[differing[1]] == digits_b[differing[0]]:
            return "transposed"
        if digits_a[:4] == digits_b[:4] and digits_a[4:6] == digits_b[6:8] and digits_a[6:8] == digits_b[4:6]:
            return "transposed"
        day_a, day_b = _date(a), _date(b)
        if day_a and day_b and abs((day_a - day_b).days) <= 1:
            return "transposed"
        if digits_a[:4] == digits_b[:4]:
            return "same-year"
    return "different"


#: Street-level parts shorter than this (a town alone) agree at most as ``similar``.
_STREET_LEVEL = 6


def address_level(a: str, b: str, rules: MatchRules) -> str:
    """How close two normalized addresses are: rapidfuzz ratio of their parts below the district (the
    shared province and city prefix would make every address of a city look alike)."""
    street_a, street_b = street_part(a), street_part(b)
    if not street_a or not street_b:
        street_a, street_b = a, b
    similarity = ratio(street_a, street_b) / 100
    if similarity >= rules.address_same_ratio:
        return "same" if min(len(street_a), len(street_b)) >= _STREET_LEVEL else "similar"
    return "similar" if similarity >= rules.address_similar_ratio else "different"


def compare(a: Features, b: Features, rules: MatchRules) -> Comparison:
    """Compare two records under ``rules``."""
    parts: list[FieldComparison] = []

    def add(name: str, level: str | None) -> None:
        parts.append(FieldComparison(name, level, rules.weight(name, level) if level else 0.0))

    both_ids = bool(a.id_hash and b.id_hash)
    add("id_number", ("same" if a.id_hash == b.id_hash else "different") if both_ids else None)
    add("name", name_level(a.name, b.name, a.pinyin, b.pinyin, rules) if a.name and b.name else None)
    add("birth_date", birth_level(a.birth_date, b.birth_date) if a.birth_date and b.birth_date else None)
    add("sex", ("same" if a.sex == b.sex else "different") if a.sex and b.sex else None)
    add("phone", ("same" if set(a.phones) & set(b.phones) else "different") if a.phones and b.phones else None)
    add("address", address_level(a.address, b.address, rules) if a.address and b.address else None)
    score = sum(p.weight for p in parts)
    levels = {p.field: p.level for p in parts}

    conflicts = [n for n in ("birth_date", "sex") if levels[n] not in (None, "exact", "same")]
    if levels["id_number"] == "same":
        if not conflicts:
            return Comparison(tuple(parts), score, AUTO_LINK, CERTAIN, deterministic=True)
        held = "the same ID number, but " + " and ".join(n.replace("_", " ") for n in conflicts) + " differ"
        return Comparison(tuple(parts), score, REVIEW, POSSIBLE, held_back=held)

    held_back = ""
    if score >= rules.auto_link:
        name_rank = LEVELS["name"].index(levels["name"]) if levels["name"] else len(LEVELS["name"])
        if levels["id_number"] == "different":
            held_back = "valid ID numbers differ"
        elif name_rank > LEVELS["name"].index(rules.auto_link_min_name):
            held_back = f"names only {levels['name'] or 'missing'} (family members look alike)"
        elif levels["birth_date"] != "exact" and not (levels["birth_date"] == "transposed" and levels["phone"] == "same"):
            held_back = "birth dates differ"
        elif levels["id_number"] is None and levels["phone"] == "different" and levels["address"] != "same":
            held_back = "phones differ and no ID number or address confirms"
        if not held_back:
            return Comparison(tuple(parts), score, AUTO_LINK, PROBABLE)
    if score >= rules.review or held_back:
        return Comparison(tuple(parts), score, REVIEW, POSSIBLE, held_back=held_back)
    return Comparison(tuple(parts), score, NO_MATCH, CERTAINLY_NOT)
