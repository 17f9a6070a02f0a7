"""An :class:`~hub.dashboards.evaluation.Evaluation` as the FHIR summary ``MeasureReport`` and as the compact JSON
the dashboard page reads: the same figures, built from the same rows."""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime
from typing import Any

from hub.dashboards.definitions import INDICATOR_SYSTEM, STRATIFIER_SYSTEM
from hub.dashboards.evaluation import ALL, Evaluation, Figure, Row
from hub.errors import InvalidRequest
from hub.fhir.access import INSTITUTION_TAG
from hub.recognition.decisions import REASON_SYSTEM
from hub.telediagnosis.figures import MAX_YEAR, MIN_YEAR

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
STRATIFIER_NAMES = {"institution": "机构", "center": "诊断中心", "reason": "复查原因", "source": "数据源"}
_STRATUM_SYSTEMS = {"institution": INSTITUTION_TAG, "center": INSTITUTION_TAG, "reason": REASON_SYSTEM,
                    "source": "urn:hub:source"}
_PERIOD = re.compile(r"^(\d{4})(?:-(?:Q([1-4])|(\d{2})))?$")


def parse_period(text: str) -> tuple[date, date]:
    """A year (2026), a quarter (2026-Q1) or a month (2026-03) as its first and last day."""
    match = _PERIOD.match(text.strip())
    if match is None:
        raise InvalidRequest(f"period must be a year (2026), a quarter (2026-Q1) or a month (2026-03), got {text!r}")
    year = int(match.group(1))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InvalidRequest(f"Dates must fall in the years {MIN_YEAR} to {MAX_YEAR}")
    if match.group(2):
        first_month, last_month = 3 * int(match.group(2)) - 2, 3 * int(match.group(2))
    elif match.group(3):
        first_month = last_month = int(match.group(3))
        if not 1 <= first_month <= 12:
            raise InvalidRequest(f"No month {first_month} in {text!r}")
    else:
        first_month, last_month = 1, 12
    return date(year, first_month, 1), date(year, last_month, calendar.monthrange(year, last_month)[1])


def _score(figure: Figure) -> dict[str, Any] | None:
    score = figure.score
    if score is None:
        return None
    out: dict[str, Any] = {"value": score}
    if figure.group.unit and figure.group.unit != "%":
        out["unit"] = figure.group.unit
    return out


def _populations(figure: Figure) -> list[dict[str, Any]]:
    def population(code: str, value: float | None) -> dict[str, Any]:
        return {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": int(value or 0)}

    if figure.group.scoring in ("proportion", "ratio"):
        return [population("numerator", figure.numerator), population("denominator", figure.denominator)]
    if figure.group.scoring == "count" and float(figure.numerator or 0).is_integer():
        return [population("initial-population", figure.numerator)]
    return []


def _group(figure: Figure, strata: dict[str, dict[str, tuple[Row, ...]]]) -> dict[str, Any]:
    group = figure.group
    out: dict[str, Any] = {"code": {"coding": [{"system": INDICATOR_SYSTEM, "code": group.code, "display": group.name}],
                                    "text": group.name}}
    populations = _populations(figure)
    if populations:
        out["population"] = populations
    score = _score(figure)
    if score is not None:
        out["measureScore"] = score
    stratifiers = []
    for stratifier in group.stratifiers:
        rows = strata.get(stratifier, {}).get(group.code, ())
        entries = []
        for stratum in rows:
            value = next(f for f in stratum.figures if f.group.code == group.code)
            entry: dict[str, Any] = {"value": {"coding": [{"system": _STRATUM_SYSTEMS[stratifier], "code": stratum.key,
                                                           "display": stratum.name}], "text": stratum.name}}
            if pops := _populations(value):
                entry["population"] = pops
            if (stratum_score := _score(value)) is not None:
                entry["measureScore"] = stratum_score
            entries.append(entry)
        stratifiers.append({"code": [{"coding": [{"system": STRATIFIER_SYSTEM, "code": stratifier}],
                                      "text": STRATIFIER_NAMES[stratifier]}], "stratum": entries})
    if stratifiers:
        out["stratifier"] = stratifiers
    return out


def measure_report(evaluation: Evaluation, now: datetime) -> dict[str, Any]:
    """The summary MeasureReport (R4) of ``evaluation`` (status ``pending`` while writes wait to be counted)."""
    report: dict[str, Any] = {
        "resourceType": "MeasureReport", "status": "pending" if evaluation.pending else "complete", "type": "summary",
        "measure": evaluation.measure.url, "date": now.isoformat(timespec="seconds"),
        "period": {"start": evaluation.first.isoformat(), "end": evaluation.last.isoformat()},
    }
    if evaluation.unit.key != ALL:
        report["reporter"] = {"reference": f"Organization/{evaluation.unit.key}", "display": evaluation.unit.name}
    report["group"] = [_group(figure, evaluation.strata) for figure in evaluation.unit.figures]
    return report


def _values(figure: Figure) -> dict[str, Any]:
    return {"numerator": figure.numerator, "denominator": figure.denominator, "value": figure.score}


def _row(row: Row) -> dict[str, Any]:
    return {"id": row.key, "name": row.name, "kind": row.kind,
            "figures": {f.group.code: _values(f) for f in row.figures}}


def compact(evaluation: Evaluation) -> dict[str, Any]:
    """The figures as the dashboard page reads them (the MeasureReport's numbers, without FHIR's nesting)."""
    breakdowns = {stratifier: {code: [{"id": r.key, "name": r.name, **_values(r.figures[0])} for r in rows]
                               for code, rows in by_code.items()}
                  for stratifier, by_code in evaluation.strata.items() if stratifier != "institution"}
    return {
        "measure": evaluation.measure.measure_id, "title": evaluation.measure.title, "pending": evaluation.pending,
        "figures": [{"code": f.group.code, "name": f.group.name, "scoring": f.group.scoring, "unit": f.group.unit,
                     "target": f.group.target, **_values(f)} for f in evaluation.unit.figures],
        "children": [_row(child) for child in evaluation.children],
        "breakdowns": breakdowns,
    }
