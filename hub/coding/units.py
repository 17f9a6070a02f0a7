"""Lab units: recognizing how LIS systems write them and converting between UCUM units.

The UCUM subset shipped in ``terminology/`` gives each unit a dimension and a factor to
that dimension's base unit (mol/L, g/L, /L, U/L …) and lists the spellings LIS systems
use (``mmol/l``, ``μmol/L``, ``×10^9/L``) as aliases. Conversions within a dimension
multiply by factors; mass ↔ substance concentration uses the analyte's molar mass
(glucose 180.16 g/mol: 5.6 mmol/L = 100.9 mg/dL). Written by hand: a full UCUM parser
(ucumvert, pint) would accept far more than a lab report holds, and none knows the Chinese
spellings.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from hub.coding.codesystems import CodeSystemIndex
from hub.coding.text import fold

UCUM = "http://unitsofmeasure.org"
_MASS, _SUBSTANCE = "mass-concentration", "substance-concentration"
#: Significant digits kept by a conversion.
SIGNIFICANT = 4


@dataclass(frozen=True)
class Unit:
    """One UCUM unit with its dimension and its factor to the dimension's base unit."""

    code: str
    display: str
    dimension: str
    factor: Decimal


class Units:
    """The units the hub knows, by UCUM code and by alias."""

    def __init__(self, units: dict[str, Unit], aliases: dict[str, str]) -> None:
        self.units = units
        self._exact = {**{code: code for code in units}, **aliases}
        self._folded = {fold(k): v for k, v in self._exact.items()}

    @classmethod
    def from_code_system(cls, index: CodeSystemIndex) -> "Units":
        """Units from the stored UCUM subset (properties ``dimension`` and ``factor``, aliases as designations)."""
        units: dict[str, Unit] = {}
        aliases: dict[str, str] = {}
        for concept in index.concepts.values():
            dimension = next(iter(concept.values("dimension")), None)
            factor = next(iter(concept.values("factor")), None)
            if dimension is None or factor is None:
                continue
            units[concept.code] = Unit(concept.code, concept.display or concept.code, str(dimension),
                                       Decimal(str(factor)))
            for designation in concept.designations:
                if (designation.get("use") or {}).get("code") == "alias" and designation.get("value"):
                    aliases[designation["value"]] = concept.code
        return cls(units, aliases)

    def resolve(self, text: str | None) -> Unit | None:
        """The unit written as ``text`` (a UCUM code or a known spelling), or None."""
        if not text:
            return None
        code = self._exact.get(text.strip()) or self._folded.get(fold(text))
        return self.units.get(code) if code else None

    def convert(self, value: Decimal, source: Unit, target: Unit, molar_mass: Decimal | None = None) -> Decimal | None:
        """``value`` in ``source`` expressed in ``target``; None when they do not convert."""
        if source.code == target.code:
            return value
        base = value * source.factor
        if source.dimension != target.dimension:
            if molar_mass is None or {source.dimension, target.dimension} != {_MASS, _SUBSTANCE}:
                return None
            base = base * molar_mass if source.dimension == _SUBSTANCE else base / molar_mass
        try:
            return significant(base / target.factor)
        except InvalidOperation:  # beyond decimal precision: not a lab value anyone can convert
            return None


def significant(value: Decimal, digits: int = SIGNIFICANT) -> Decimal:
    """``value`` rounded to ``digits`` significant digits, never in exponent notation."""
    if value == 0:
        return Decimal(0)
    places = max(digits - value.adjusted() - 1, 0)
    return value.quantize(Decimal(1).scaleb(-places))
