"""Link quality on a labelled synthetic population (the benchmark's generator, a small region)."""

from __future__ import annotations

import uuid

from hub.empi.engine import Engine
from hub.store.database import Database
from hub.synthetic.population import PopulationGenerator, link_quality


def test_generated_records_carry_the_errors_front_desks_make() -> None:
    population = PopulationGenerator(seed=3).population(400)
    names = {}
    for label, _institution, resource in population.records:
        names.setdefault(label, set()).add(resource["name"][0]["text"])
    assert any(len(variants) > 1 for variants in names.values())  # homophones, typos, traditional forms
    legacy = [r for _l, _i, r in population.records
              for i in r["identifier"] if i["system"].endswith("1.3") and len(i["value"]) == 15]
    assert legacy, "some records keep the 15-digit legacy ID number"
    assert any(p.twin_of is not None for p in population.persons)
    assert any(label < 0 for label, _i, _r in population.records)  # 无名氏 admissions


def test_auto_links_are_precise_and_review_catches_the_rest(database: Database) -> None:
    population = PopulationGenerator(seed=11).population(600)
    labels: dict[str, int] = {}
    page = []
    for label, institution, resource in population.records:
        patient_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{institution}|{resource['identifier'][0]['value']}"))
        labels[patient_id] = label
        page.append(("Patient", patient_id, {**resource, "id": patient_id}))
    with database.fhir_service(write=True) as service:
        service.upsert_many(page)
    stats = Engine(database).run(batch=300)
    assert stats.processed == len(population.records)
    with database.empi(write=False) as store:
        person_of, reviews = store.assignments()
    quality = link_quality(labels, person_of, reviews)
    assert quality.true_pairs > 300
    assert quality.auto_precision >= 0.995, quality.as_dict()
    assert quality.recall >= 0.95, quality.as_dict()
    assert quality.review_items < len(population.records) * 0.15, quality.as_dict()
