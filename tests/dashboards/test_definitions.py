"""The Measures as data: each has its evaluator, well-formed groups, and is valid FHIR as the store checks it."""

from __future__ import annotations

from hub.dashboards.definitions import SCORINGS, measures
from hub.dashboards.indicators import EVALUATORS
from hub.dashboards.report import STRATIFIER_NAMES
from hub.fhir.validation import validate_resource


def test_every_measure_has_its_evaluator_and_well_formed_groups() -> None:
    assert list(EVALUATORS) == list(measures())
    for definition in measures().values():
        codes = [group.code for group in definition.groups]
        assert len(codes) == len(set(codes)), definition.measure_id
        for group in definition.groups:
            assert group.scoring in SCORINGS and group.name
            assert group.stratifiers[0] == "institution" and set(group.stratifiers) <= set(STRATIFIER_NAMES)
            assert group.target is None or 0 < group.target < 1
        validate_resource(dict(definition.resource), "Measure")
        assert definition.url == f"urn:hub:measure:{definition.measure_id}"
