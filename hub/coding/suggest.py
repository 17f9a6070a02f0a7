"""Ranked target suggestions for a local code, from its display text.

The score of a candidate is the best, over its names, of character-bigram Dice similarity
and pinyin similarity (rapidfuzz ratio of the toneless pinyin), so ``谷丙转氨酶`` finds
``丙氨酸氨基转移酶`` through shared characters and ``血糖`` finds ``葡萄糖`` only weakly.
Targets other sources already approved for the same text rank first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.text import bigrams, fold, pinyin


@dataclass(frozen=True)
class Suggestion:
    """One candidate target."""

    system: str
    code: str
    display: str
    score: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"system": self.system, "code": self.code, "display": self.display, "score": round(self.score, 3),
                "reason": self.reason}


def similarity(left: str, right: str) -> float:
    """0..1: how alike two display texts are (bigrams and pinyin)."""
    a, b = bigrams(left), bigrams(right)
    dice = 2 * len(a & b) / (len(a) + len(b)) if a and b else 0.0
    sound = fuzz.ratio(pinyin(left), pinyin(right)) / 100
    return max(dice, 0.9 * sound)


def suggest(display: str, code: str, index: CodeSystemIndex | None, approved: Iterable[tuple[str, str, str, int]],
            limit: int = 5) -> list[Suggestion]:
    """The best targets for a local code: approved elsewhere (system, code, display, count) first, then similar."""
    out: dict[tuple[str, str], Suggestion] = {}
    for system, target_code, target_display, count in approved:
        out[(system, target_code)] = Suggestion(system, target_code, target_display, 1.0 + min(count, 9) / 100,
                                                f"其他机构已批准（{count} 处）")
    if index is not None and display:
        folded = fold(display)
        scored = []
        for concept in index.concepts.values():
            if concept.inactive or (concept.values("kind")[:1] in (["chapter"], ["block"])):
                continue
            best = max((similarity(display, name) for name in concept.names()), default=0.0)
            if concept.code.casefold() == fold(code) or any(fold(n) == folded for n in concept.names()):
                best = max(best, 0.99)
            if best >= 0.3:
                scored.append((best, concept))
        scored.sort(key=lambda item: (-item[0], item[1].code))
        for score, concept in scored[:limit]:
            key = (index.url, concept.code)
            if key not in out:
                out[key] = Suggestion(index.url, concept.code, concept.display or "", score, "名称相似")
    return sorted(out.values(), key=lambda s: -s.score)[:limit]
