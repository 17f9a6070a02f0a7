"""The matching rules as data: Fellegi–Sunter m/u probabilities, thresholds, blocking limits.

The hub's defaults are in ``rules.yaml``; ``HUB_EMPI_RULES_FILE`` names another file and
``HUB_EMPI_REGION`` picks the overrides of one region (``regions:`` in the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.errors import InvalidRequest

DEFAULT_RULES = Path(__file__).with_name("rules.yaml")
#: The fields compared and their levels, best first (the order the guards rely on).
LEVELS: dict[str, tuple[str, ...]] = {
    "name": ("exact", "homophone", "fuzzy-pinyin", "one-character", "similar", "different"),
    "birth_date": ("exact", "transposed", "same-year", "different"),
    "sex": ("same", "different"),
    "phone": ("same", "different"),
    "address": ("same", "similar", "different"),
    "id_number": ("same", "different"),
}


@dataclass(frozen=True)
class MatchRules:
    """Weights (log2 m/u) per field and level, thresholds and limits."""

    weights: dict[str, dict[str, float]]
    auto_link: float
    review: float
    similar_jaro_winkler: float
    address_same_ratio: float
    address_similar_ratio: float
    auto_link_min_name: str
    max_block_size: int

    def weight(self, field: str, level: str) -> float:
        """The weight of ``field`` agreeing at ``level``."""
        return self.weights[field][level]

    def probability(self, score: float) -> float:
        """A score as a match probability for ``$match``: 0.5 at the review threshold, 0.95 at auto-link."""
        slope = math.log(19) / max(self.auto_link - self.review, 1e-9)
        exponent = max(-60.0, min(60.0, -(score - self.review) * slope))
        return 1.0 / (1.0 + math.exp(exponent))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _problem(message: str, source: str) -> InvalidRequest:
    return InvalidRequest(f"EMPI rules {source}: {message}")


def rules_from(data: dict[str, Any], region: str = "", source: str = "(data)") -> MatchRules:
    """Rules from their parsed YAML form, with ``region``'s overrides applied. Raises InvalidRequest."""
    regions = data.get("regions") or {}
    if region:
        if region not in regions:
            raise _problem(f"no overrides for region {region!r} (known: {', '.join(sorted(regions)) or 'none'})", source)
        data = _merge(data, regions[region])
    weights: dict[str, dict[str, float]] = {}
    fields = data.get("fields") or {}
    for field, levels in LEVELS.items():
        weights[field] = {}
        for level in levels:
            entry = (fields.get(field) or {}).get(level)
            if not isinstance(entry, dict) or "m" not in entry or "u" not in entry:
                raise _problem(f"fields.{field}.{level} needs m and u", source)
            m, u = float(entry["m"]), float(entry["u"])
            if not (0 < m < 1 and 0 < u < 1):
                raise _problem(f"fields.{field}.{level}: m and u are probabilities strictly between 0 and 1", source)
            weights[field][level] = math.log2(m / u)
    thresholds = data.get("thresholds") or {}
    auto, review = float(thresholds.get("auto_link", 0)), float(thresholds.get("review", 0))
    if not review < auto:
        raise _problem("thresholds.review must be below thresholds.auto_link", source)
    min_name = str(data.get("auto_link_min_name", "fuzzy-pinyin"))
    if min_name not in LEVELS["name"]:
        raise _problem(f"auto_link_min_name must be one of {', '.join(LEVELS['name'])}", source)
    return MatchRules(
        weights=weights, auto_link=auto, review=review,
        similar_jaro_winkler=float(data.get("similar_jaro_winkler", 0.88)),
        address_same_ratio=float(data.get("address_same_ratio", 0.9)),
        address_similar_ratio=float(data.get("address_similar_ratio", 0.7)),
        auto_link_min_name=min_name,
        max_block_size=int((data.get("blocking") or {}).get("max_block_size", 500)),
    )


def load_rules(path: str = "", region: str = "") -> MatchRules:
    """The rules of ``path`` (default: the hub's), with ``region``'s overrides."""
    file = Path(path) if path else DEFAULT_RULES
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise _problem(f"cannot be read ({type(exc).__name__})", str(file)) from None
    if not isinstance(data, dict):
        raise _problem("must be a mapping", str(file))
    return rules_from(data, region, str(file))
