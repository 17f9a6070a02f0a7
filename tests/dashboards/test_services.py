"""The consortium's shared services on the dashboards: 互认 and 远程诊断 figures per unit, by hand and against
the services' own figures."""

from __future__ import annotations

from datetime import date

from hub.dashboards.service import Dashboards
from hub.fhir.search_values import local_zone
from hub.recognition.decisions import Decision
from hub.store.database import Database
from hub.telediagnosis.figures import figures as tele_figures
from hub.telediagnosis.figures import local_days
from tests.dashboards.support import figures
from tests.recognition.support import COMMUNITY_B, HOSPITAL_A, ago, check, consortium, glucose, put, zhang_wei
from tests.telediagnosis.support import OTHER_SITE, SITE, TOWNSHIP, Clock, reported_exams


def test_tele_diagnosis_per_unit_and_reading_center(database: Database) -> None:
    clock = Clock()
    start = clock.now
    reported_exams(database, clock)
    dashboards = Dashboards(database, clock=clock)
    day = start.astimezone(local_zone()).date().isoformat()
    consortium_ks = figures(dashboards, "tele-diagnosis", day, day, "consortium-ks")
    assert consortium_ks["volume"][2] == 4 and consortium_ks["completed"][2] == 4
    assert consortium_ks["tat-p50"][2] == 30.0 and consortium_ks["tat-p90"][2] == 75.0  # of 20, 20, 40, 90
    assert consortium_ks["sla-compliance"] == (3, 4, 0.75)
    site = figures(dashboards, "tele-diagnosis", day, day, SITE)
    assert (site["volume"][2], site["tat-p50"][2], site["tat-p90"][2]) == (3, 20.0, 36.0)
    # the same numbers as tele-diagnosis's own figures by site
    own = {r["key"]: r for r in tele_figures(database, *local_days(date.fromisoformat(day), date.fromisoformat(day)),
                                             "site", clock.now)["rows"]}
    for institution in (SITE, TOWNSHIP, OTHER_SITE):
        mine = figures(dashboards, "tele-diagnosis", day, day, institution)
        assert (mine["volume"][2], mine["completed"][2], mine["tat-p50"][2], mine["tat-p90"][2]) == \
            (own[institution]["volume"], own[institution]["completed"], own[institution]["tat_p50_minutes"],
             own[institution]["tat_p90_minutes"])
    evaluation = dashboards.evaluate("tele-diagnosis", date.fromisoformat(day), date.fromisoformat(day),
                                     "consortium-ks", None)
    by_center = {row.key: row.figures[0].numerator for row in evaluation.strata["center"]["volume"]}
    assert by_center == {"org-ks-imaging": 3, "org-ks-ecg": 1}


def test_result_recognition_per_unit(database: Database, terminology: None) -> None:
    recognition = consortium(database)
    patient_b = zhang_wei(database)
    put(database, glucose("glu-a", f"{HOSPITAL_A}-1001", HOSPITAL_A, 5.6, "mmol/L", ago(days=1)))
    first = check(recognition, f"Patient/{patient_b}")
    second = check(recognition, f"Patient/{patient_b}")
    third = check(recognition, f"Patient/{patient_b}")
    recognition.decide([Decision(first.check_id, "recognized"), Decision(second.check_id, "retested", "emergency")],
                       "test", None)
    assert third.check_id
    dashboards = Dashboards(database)
    today = ago(days=0).astimezone(local_zone()).date().isoformat()
    mine = figures(dashboards, "result-recognition", today, today, COMMUNITY_B)
    assert mine["recognition-rate"] == (1, 3, round(1 / 3, 4))
    assert mine["retested"][2] == 1 and mine["avoided-tests"][2] == 1
    assert mine["avoided-cost"][2] == 5  # the catalogue's price of fasting glucose: 5.00 元
    own = recognition.figures(date.fromisoformat(today), date.fromisoformat(today), period="total",
                              group="institution")["rows"]
    [row] = [r for r in own if r["institution"] == COMMUNITY_B]
    assert (row["recognized"], row["eligible"], row["retested"]) == (1, 3, 1)
    evaluation = dashboards.evaluate("result-recognition", date.fromisoformat(today), date.fromisoformat(today),
                                     COMMUNITY_B, None)
    assert [(r.key, r.figures[0].numerator) for r in evaluation.strata["reason"]["retested"]] == [("emergency", 1)]
