"""The data center's health: a real source ingested over ODBC (the demo's front-end database of 玉山镇), its
records, freshness, quarantined row and mapping conflict, and an EMPI review waiting — as the dashboards count them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hub.cli.coding import load_mapping_dir, load_terminology
from hub.cli.demo_consortium import run_demo_source
from hub.cli.demo_source import DEMO_INSTITUTION, DEMO_SOURCE
from hub.dashboards.service import Dashboards
from hub.fhir.instants import now_utc
from hub.store.database import Database
from tests.dashboards.support import CHC, figures, roster
from tests.empi.support import run_empi, source_patient, store


def test_records_freshness_quarantine_conflicts_and_reviews(database: Database, tmp_path: Path) -> None:
    dashboards = roster(database)
    load_terminology(database)
    load_mapping_dir(database)
    run = run_demo_source(database, tmp_path)
    assert not isinstance(run, str), run
    store(database, source_patient("org-ks-1", "R1", "张丽", gender="female"),
          source_patient(CHC, "R2", "张莉", gender="female"))  # homophones, nothing else: a review, not a link
    run_empi(database)
    with database.fhir_service(write=True) as service:  # what the source sent, as FHIR sees it
        sent = service.search(None, [("_source", f"urn:hub:source:{DEMO_SOURCE}"), ("_summary", "count")],
                              "http://hub").body["total"]
    health = figures(dashboards, "data-center-health", "2026-01-01", "2026-12-31", DEMO_INSTITUTION)
    assert health["records"][2] == sent and sent > 10
    assert health["fresh-sources"] == (1, 1, 1.0)
    assert 0 <= health["max-lag-hours"][2] < 1
    assert health["quarantined"][2] == 1                    # the mistyped ID number
    assert health["mapping-conflicts"][2] == 1              # the unmapped lab item TG
    assert health["match-reviews"][2] == 1                  # 张莉 of the center against 张丽
    numerator, denominator, coverage = health["mapping-coverage"]
    assert 0 < numerator < denominator and coverage == round(numerator / denominator, 4)
    evaluation = dashboards.evaluate("data-center-health", *(now_utc().date(),) * 2, DEMO_INSTITUTION, None)
    assert [(row.key, row.figures[0].numerator) for row in evaluation.strata["source"]["records"]] == \
        [(DEMO_SOURCE, sent)]
    # a day later the source is late: not on time, lag over 24 hours
    late = Dashboards(database, clock=lambda: now_utc() + timedelta(hours=30))
    later = figures(late, "data-center-health", "2026-01-01", "2026-12-31", DEMO_INSTITUTION)
    assert later["fresh-sources"] == (0, 1, 0.0) and later["max-lag-hours"][2] >= 30
