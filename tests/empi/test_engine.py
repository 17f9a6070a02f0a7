"""The matching engine on a real database: links, review items, placeholders, golden Patients, history."""

from __future__ import annotations

import pytest

from hub.empi.engine import Engine
from hub.empi.golden import LINK_EXTENSION, REGIONAL_ID_SYSTEM, regional_id_valid
from hub.empi.operations import EmpiOperations
from hub.errors import BusinessRuleViolation, InvalidRequest
from hub.fhir.validation import validate_resource
from hub.store.database import Database
from tests.empi.support import (
    ZHANG_WEI_ID,
    open_reviews,
    person_of,
    read,
    run_empi,
    source_patient,
    store,
)

HOME = "江苏省昆山市玉山镇人民路1号"


def _links(golden: dict) -> dict[str, dict[str, str]]:
    out = {}
    for link in golden["link"]:
        parts = {p["url"]: p.get("valueCode", p.get("valueDecimal")) for p in link["extension"][0]["extension"]}
        out[link["other"]["reference"].split("/")[1]] = parts
    return out


def test_the_same_id_number_links_across_institutions_even_in_its_15_digit_form(database: Database) -> None:
    store(database,
          source_patient("org-a", "1", "张伟", id_number=ZHANG_WEI_ID),
          source_patient("org-b", "77", "張偉", id_number=ZHANG_WEI_ID[:6] + ZHANG_WEI_ID[8:17]))
    stats = run_empi(database)
    assert (stats.processed, stats.new_persons, stats.auto_links) == (2, 1, 1)
    person = person_of(database, "org-a-1")
    assert person_of(database, "org-b-77") == person
    golden = read(database, "Patient", person)
    validate_resource(golden, "Patient")  # a valid R4 Patient
    assert {"system": "urn:hub:empi", "code": "golden", "display": "区域主索引"} in golden["meta"]["tag"]
    [identifier] = golden["identifier"]  # no hospital identifier, no ID number copied
    assert identifier["system"] == REGIONAL_ID_SYSTEM and regional_id_valid(identifier["value"])
    assert identifier["value"].startswith("320583")
    links = _links(golden)
    assert set(links) == {"org-a-1", "org-b-77"}
    assert links["org-b-77"]["grade"] == "certain" and links["org-b-77"]["origin"] == "auto"
    assert all(link["type"] == "seealso" and link["extension"][0]["url"] == LINK_EXTENSION for link in golden["link"])


def test_a_homophone_without_other_evidence_goes_to_review_not_to_a_link(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张丽", gender="female"))
    store(database, source_patient("org-b", "2", "张莉", gender="female"))
    run_empi(database)
    assert person_of(database, "org-a-1") != person_of(database, "org-b-2")
    [item] = open_reviews(database)
    assert item["patient_id"] == "org-b-2" and item["candidate_person"] == person_of(database, "org-a-1")
    levels = {f["field"]: f["level"] for f in item["comparison"]["fields"]}
    assert levels["name"] == "homophone" and levels["birth_date"] == "exact"


def test_placeholder_identities_are_never_matched(database: Database) -> None:
    store(database,
          source_patient("org-a", "1", "无名氏", birth=None),
          source_patient("org-a", "2", "无名氏", birth=None),
          source_patient("org-b", "3", "王芳之子", birth="2026-11-30", phone="13912345678"),
          source_patient("org-b", "4", "王芳之子", birth="2026-11-30", phone="13912345678"),
          source_patient("org-c", "5", "李雷", tags=[{"system": "urn:hub:empi", "code": "no-match"}]),
          source_patient("org-c", "6", "李雷"))
    stats = run_empi(database)
    assert stats.new_persons == 6 and stats.auto_links == 0
    assert open_reviews(database) == []


def test_a_rolled_back_write_is_never_matched(database: Database) -> None:
    with pytest.raises(RuntimeError), database.fhir_service(write=True) as service:
        service.update("Patient", "org-a-1", source_patient("org-a", "1", "张伟"))
        raise RuntimeError("the transaction fails after the write")
    assert run_empi(database).processed == 0
    assert read(database, "Patient", "org-a-1") is None


def test_an_update_that_no_longer_matches_moves_the_record_out(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张伟", phone="13812345678", address=HOME),
          source_patient("org-b", "2", "张伟", phone="13812345678", address=HOME))
    run_empi(database)
    shared = person_of(database, "org-a-1")
    assert person_of(database, "org-b-2") == shared
    store(database, source_patient("org-b", "2", "李娜", birth="1992-11-03", gender="female"))
    run_empi(database)
    assert person_of(database, "org-b-2") != shared and person_of(database, "org-a-1") == shared
    assert set(_links(read(database, "Patient", shared))) == {"org-a-1"}


def test_unchanged_rewrites_change_nothing(database: Database) -> None:
    patient = source_patient("org-a", "1", "张伟")
    store(database, patient)
    run_empi(database)
    store(database, {**patient, "active": True})  # a new version, the same features
    assert run_empi(database).unchanged == 1


def test_manual_decisions_are_never_overridden(database: Database) -> None:
    a = source_patient("org-a", "1", "张伟", phone="13812345678", address=HOME)
    b = source_patient("org-b", "2", "张伟", phone="13812345678", address=HOME)
    store(database, a, b)
    run_empi(database)
    operations = EmpiOperations(Engine(database))
    operations.unlink("org-b-2", "client:reviewer", "父子同名，不是同一人")
    apart = person_of(database, "org-b-2")
    assert apart != person_of(database, "org-a-1")
    store(database, {**b, "address": [{"text": HOME + "2单元"}]})  # a later update of the record
    store(database, source_patient("org-c", "3", "张伟", phone="13812345678", address=HOME))
    run_empi(database)
    assert person_of(database, "org-b-2") == apart  # the engine respects the decision
    assert person_of(database, "org-c-3") in (person_of(database, "org-a-1"), apart)

    stranger = source_patient("org-d", "9", "李娜", birth="1992-11-03", gender="female")
    store(database, stranger)
    run_empi(database)
    operations.link("org-d-9", person_of(database, "org-a-1"), "client:reviewer", "户籍核实为同一人")
    store(database, {**stranger, "birthDate": "1992-11-04"})
    run_empi(database)
    assert person_of(database, "org-d-9") == person_of(database, "org-a-1")


def test_merge_and_unmerge_keep_their_history(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张伟"),
          source_patient("org-b", "2", "章卫", birth="1980-06-12"))
    run_empi(database)
    first, second = person_of(database, "org-a-1"), person_of(database, "org-b-2")
    assert first != second
    operations = EmpiOperations(Engine(database))
    merged = operations.merge(second, first, "client:reviewer", "改名前后的同一人（公安户籍核实）")
    assert merged["moved"] == ["org-b-2"] and person_of(database, "org-b-2") == first
    replaced = read(database, "Patient", second)
    assert replaced["active"] is False
    assert replaced["link"] == [{"other": {"reference": f"Patient/{first}"}, "type": "replaced-by"}]
    assert set(_links(read(database, "Patient", first))) == {"org-a-1", "org-b-2"}

    restored = operations.unmerge(second, "client:reviewer", "核实有误")
    assert restored["restored"] == ["org-b-2"] and person_of(database, "org-b-2") == second
    assert read(database, "Patient", second)["active"] is True
    with database.empi(write=False) as empi:
        actions = [e["action"] for e in empi.history(person_id=second)]
        reasons = [e["reason"] for e in empi.history(person_id=second)]
    assert actions[:2] == ["unmerge", "merge"] and "核实有误" in reasons
    store(database, source_patient("org-b", "2", "章卫", birth="1980-06-12", phone="13812345678"))
    run_empi(database)
    assert person_of(database, "org-b-2") == second  # unmerged records are kept apart


def test_not_duplicate_closes_the_review_and_prevents_later_links(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张丽", gender="female"),
          source_patient("org-b", "2", "张莉", gender="female"))
    run_empi(database)
    [item] = open_reviews(database)
    first, second = person_of(database, "org-a-1"), person_of(database, "org-b-2")
    EmpiOperations(Engine(database)).not_duplicate(first, second, "client:reviewer", "姐妹，不是同一人")
    assert open_reviews(database) == []
    store(database, source_patient("org-b", "2", "张丽", gender="female", phone="13812345678"))
    run_empi(database)
    assert person_of(database, "org-b-2") == second and open_reviews(database) == []
    assert item["status"] == "open"


def test_a_deleted_source_leaves_its_person(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张伟", id_number=ZHANG_WEI_ID),
          source_patient("org-b", "2", "张伟", id_number=ZHANG_WEI_ID))
    run_empi(database)
    person = person_of(database, "org-a-1")
    with database.fhir_service(write=True) as service:
        service.delete("Patient", "org-b-2")
    assert run_empi(database).removed == 1
    assert set(_links(read(database, "Patient", person))) == {"org-a-1"}
    with database.fhir_service(write=True) as service:
        service.delete("Patient", "org-a-1")
    run_empi(database)
    assert read(database, "Patient", person) is None  # no source left: the golden Patient goes too


def test_decisions_need_a_reason_and_a_sense(database: Database) -> None:
    store(database, source_patient("org-a", "1", "张伟"))
    run_empi(database)
    operations = EmpiOperations(Engine(database))
    person = person_of(database, "org-a-1")
    with pytest.raises(InvalidRequest, match="reason"):
        operations.merge(person, person, "client:reviewer", "  ")
    with pytest.raises(BusinessRuleViolation, match="itself"):
        operations.merge(person, person, "client:reviewer", "试试")
    with pytest.raises(BusinessRuleViolation, match="only source"):
        operations.unlink("org-a-1", "client:reviewer", "试试")


def test_a_record_marked_do_not_match_stays_alone_through_its_updates(database: Database) -> None:
    shared = source_patient("org-a", "1", "测试患者", phone="13812345678", address=HOME)
    store(database, shared, source_patient("org-b", "2", "测试患者", phone="13812345678", address=HOME))
    run_empi(database)
    assert person_of(database, "org-a-1") == person_of(database, "org-b-2")
    operations = EmpiOperations(Engine(database))
    operations.do_not_match("org-a-1", "client:reviewer", "信息科的测试病历，多人共用")
    marked = person_of(database, "org-a-1")
    assert marked != person_of(database, "org-b-2")
    store(database, {**shared, "birthDate": "1980-05-13"},
          source_patient("org-c", "3", "测试患者", phone="13812345678", address=HOME))
    run_empi(database)
    assert person_of(database, "org-a-1") == marked
    assert person_of(database, "org-c-3") == person_of(database, "org-b-2")  # never to the marked record
    assert all(item["candidate_person"] != marked for item in open_reviews(database))
