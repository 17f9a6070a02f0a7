"""_summary and _elements subsetting on stored JSON bytes, without a database."""

from __future__ import annotations

from typing import Any

import pytest

from hub.errors import InvalidRequest
from hub.fhir.jsonio import loads_stored
from hub.fhir.subsetting import SUBSETTED_TAG, element_table, parse_elements, parse_summary, subset

PATIENT = (
    b'{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","tag":[{"system":"urn:x","code":"keep"}]},'
    b'"text":{"status":"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">x</div>"},'
    b'"identifier":[{"system":"urn:id","value":"1"}],"active":true,"name":[{"family":"Wang","given":["Li"]}],'
    b'"gender":"female","birthDate":"1980-01-02","_birthDate":{"extension":[{"url":"urn:e","valueString":"e"}]},'
    b'"deceasedBoolean":false,"maritalStatus":{"text":"M"},"photo":[{"title":"p"}],'
    b'"contact":[{"name":{"family":"Zhang"}}],"multipleBirthInteger":2}'
)
OBSERVATION = (
    b'{"resourceType":"Observation","id":"o1",'
    b'"text":{"status":"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">5.40</div>"},'
    b'"status":"final","category":[{"text":"vital-signs"}],"code":{"text":"weight"},'
    b'"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-01-01",'
    b'"valueQuantity":{"value":5.40,"unit":"kg","code":123456789012345678901234567890},'
    b'"interpretation":[{"text":"N"}],"note":[{"text":"n"}],"referenceRange":[{"low":{"value":1.0}}]}'
)


def _load(content: bytes) -> dict[str, Any]:
    return loads_stored(content)


def _subsetted_tags(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in resource["meta"]["tag"] if t.get("code") == "SUBSETTED"]


def test_r4_summary_and_mandatory_flags_come_from_fhir_resources() -> None:
    patient = element_table("Patient")
    summary = {info.base for info in patient.values() if info.summary}
    assert summary == {"id", "meta", "implicitRules", "identifier", "active", "name", "telecom", "gender",
                       "birthDate", "deceased", "address", "managingOrganization", "link"}
    assert not any(info.mandatory for info in patient.values())
    observation = element_table("Observation")
    assert {info.base for info in observation.values() if info.mandatory} == {"status", "code"}
    assert observation["valueQuantity"].summary and observation["valueQuantity"].base == "value"
    for name in ("interpretation", "referenceRange", "note", "category"):
        assert not observation[name].summary
    assert element_table("NoSuchType") == {}


@pytest.mark.parametrize("mode", ["true", "text", "data", "false", "count"])
def test_parse_summary_accepts_the_r4_modes(mode: str) -> None:
    assert parse_summary(mode) == mode


@pytest.mark.parametrize("bad", ["", "TRUE", "yes", "true,text"])
def test_parse_summary_refuses_other_values(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="_summary"):
        parse_summary(bad)


def test_summary_true_on_patient_keeps_summary_elements_only() -> None:
    out = _load(subset(PATIENT, "true", None))
    assert list(out) == ["resourceType", "id", "meta", "identifier", "active", "name", "gender", "birthDate",
                         "_birthDate", "deceasedBoolean"]
    assert out["name"] == [{"family": "Wang", "given": ["Li"]}]  # nested elements kept whole
    assert out["meta"]["versionId"] == "2"


def test_summary_true_on_observation_keeps_value_and_its_decimal_precision() -> None:
    content = subset(OBSERVATION, "true", None)
    out = _load(content)
    assert set(out) == {"resourceType", "id", "meta", "status", "code", "subject", "effectiveDateTime",
                        "valueQuantity"}
    assert b'"value":5.40' in content
    assert b'"code":123456789012345678901234567890' in content
    assert list(out)[:3] == ["resourceType", "id", "meta"]  # a new meta goes up front
    assert out["meta"]["tag"] == [SUBSETTED_TAG]


def test_summary_text_keeps_text_and_mandatory_elements() -> None:
    out = _load(subset(OBSERVATION, "text", None))
    assert set(out) == {"resourceType", "id", "meta", "text", "status", "code"}
    patient = _load(subset(PATIENT, "text", None))
    assert set(patient) == {"resourceType", "id", "meta", "text"}


def test_summary_data_drops_only_text() -> None:
    content = subset(OBSERVATION, "data", None)
    out = _load(content)
    original = _load(OBSERVATION)
    del original["text"]
    out["meta"].pop("tag")
    assert out == {**original, "meta": {}}
    assert b'"value":5.40' in content and b'"low":{"value":1.0}' in content


@pytest.mark.parametrize("mode", ["false", None, "count"])
def test_no_subsetting_returns_the_input_bytes(mode: str | None) -> None:
    assert subset(PATIENT, mode, None) is PATIENT


def test_nothing_removed_means_no_tag_and_same_bytes() -> None:
    no_text = b'{"resourceType":"Patient","id":"p2","active":true}'
    assert subset(no_text, "data", None) is no_text
    assert subset(no_text, "true", None) is no_text


def test_subsetted_tag_added_once_and_existing_tags_kept() -> None:
    once = subset(PATIENT, "true", None)
    tags = _load(once)["meta"]["tag"]
    assert tags == [{"system": "urn:x", "code": "keep"}, SUBSETTED_TAG]
    again = _load(subset(once, "text", None))
    assert len(_subsetted_tags(again)) == 1
    assert again["meta"]["tag"][0] == {"system": "urn:x", "code": "keep"}


def test_elements_keeps_listed_plus_id_meta_and_mandatory() -> None:
    selection = parse_elements("subject", ["Observation"])
    out = _load(subset(OBSERVATION, None, selection))
    assert set(out) == {"resourceType", "id", "meta", "subject", "status", "code"}
    assert len(_subsetted_tags(out)) == 1


def test_elements_choice_name_selects_every_typed_key() -> None:
    content = subset(OBSERVATION, None, parse_elements("value,effective", ["Observation"]))
    out = _load(content)
    assert set(out) == {"resourceType", "id", "meta", "status", "code", "valueQuantity", "effectiveDateTime"}
    assert b'"value":5.40' in content
    patient = _load(subset(PATIENT, None, parse_elements("deceased, multipleBirth,birthDate", ["Patient"])))
    assert set(patient) == {"resourceType", "id", "meta", "deceasedBoolean", "multipleBirthInteger", "birthDate",
                            "_birthDate"}


def test_elements_with_type_prefix_apply_to_that_type_only() -> None:
    selection = parse_elements("Patient.gender,Observation.note,identifier", ["Patient", "Observation"])
    assert selection.names_for("Patient") == {"gender", "identifier"}
    patient = _load(subset(PATIENT, None, selection))
    assert set(patient) == {"resourceType", "id", "meta", "gender", "identifier"}
    observation = _load(subset(OBSERVATION, None, selection))
    assert set(observation) == {"resourceType", "id", "meta", "status", "code", "note"}


def test_summary_and_elements_together_must_both_allow() -> None:
    out = _load(subset(PATIENT, "true", parse_elements("name,photo", ["Patient"])))
    assert set(out) == {"resourceType", "id", "meta", "name"}


@pytest.mark.parametrize("bad", ["", " , ", "1name", "na-me", "Patient.", ".name", "patient.name", "Patient.na me",
                                 "A.B.c", "Observation.code"])
def test_parse_elements_refuses_bad_values(bad: str) -> None:
    with pytest.raises(InvalidRequest, match="_elements"):
        parse_elements(bad, ["Patient"])
