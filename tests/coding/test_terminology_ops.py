"""Terminology operations over HTTP with R4 semantics, on the shipped catalog."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hub.coding.catalog import catalog_resources
from hub.fhir.validation import validate_resource

pytestmark = pytest.mark.usefixtures("terminology")

SEX = "urn:oid:2.16.156.10011.2.3.3.4"
ETHNICITY = "urn:oid:2.16.156.10011.2.3.3.3"
ICD = "urn:oid:2.16.156.10011.2.3.3.11"
LOINC = "http://loinc.org"


def _param(body: dict[str, Any], name: str) -> Any:
    for part in body.get("parameter", []):
        if part["name"] == name:
            return next(v for k, v in part.items() if k.startswith("value") or k == "part")
    return None


def _params(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in body.get("parameter", []) if p["name"] == name]


def _parts(part: dict[str, Any]) -> dict[str, Any]:
    return {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in part["part"]}


def test_catalog_resources_are_valid_fhir() -> None:
    for item in catalog_resources():
        validate_resource(item.resource, item.resource_type)


def test_lookup_gives_chinese_display_designation_and_hierarchy(fhir: httpx.Client) -> None:
    body = fhir.get("/CodeSystem/$lookup", params={"system": ICD, "code": "I10.x00"}).json()
    assert _param(body, "display") == "特发性(原发性)高血压"
    assert _param(body, "version") == "国家临床版2.0"
    properties = [_parts(p) for p in _params(body, "property")]
    assert {"code": "parent", "value": "I10"} in properties
    assert {"code": "child", "value": "I10.x00x002"} in properties  # extension code 高血压
    assert {"code": "kind", "value": "diagnosis"} in properties
    sex = fhir.get("/CodeSystem/$lookup", params={"system": SEX, "code": "2"}).json()
    assert _param(sex, "display") == "女性"
    assert _param(sex, "name").startswith("人的性别代码")


def test_lookup_of_an_unknown_code_or_system_is_404_naming_it(fhir: httpx.Client) -> None:
    response = fhir.get("/CodeSystem/$lookup", params={"system": SEX, "code": "5"})
    assert response.status_code == 404
    assert "'5'" in response.json()["issue"][0]["diagnostics"]
    response = fhir.get("/CodeSystem/$lookup", params={"system": "urn:nowhere", "code": "5"})
    assert response.status_code == 404
    assert "urn:nowhere" in response.json()["issue"][0]["diagnostics"]


def test_ethnicity_accepts_unpadded_codes(fhir: httpx.Client) -> None:
    body = fhir.get("/CodeSystem/$lookup", params={"system": ETHNICITY, "code": "1"}).json()
    assert _param(body, "display") == "汉族"
    valid = fhir.get("/CodeSystem/$validate-code", params={"url": ETHNICITY, "code": "3"}).json()
    assert _param(valid, "result") is True and _param(valid, "display") == "回族"


def test_validate_code_checks_code_and_display(fhir: httpx.Client) -> None:
    ok = fhir.get("/CodeSystem/$validate-code", params={"url": ICD, "code": "E11.900", "display": "2型糖尿病"})
    assert _param(ok.json(), "result") is True
    wrong_display = fhir.get("/CodeSystem/$validate-code",
                             params={"url": ICD, "code": "E11.900", "display": "高血压"}).json()
    assert _param(wrong_display, "result") is False
    assert "2型糖尿病" in _param(wrong_display, "message")
    unknown = fhir.get("/CodeSystem/$validate-code", params={"url": ICD, "code": "I10.x99"}).json()
    assert _param(unknown, "result") is False
    posted = fhir.post("/CodeSystem/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": LOINC, "code": "2345-7"}}]}).json()
    assert _param(posted, "result") is True


def test_value_set_validate_code_is_membership(fhir: httpx.Client) -> None:
    member = fhir.get("/ValueSet/$validate-code", params={
        "url": "urn:hub:valueset:lab-cbc", "system": LOINC, "code": "718-7"}).json()
    assert _param(member, "result") is True  # haemoglobin is in 血常规
    outsider = fhir.get("/ValueSet/$validate-code", params={
        "url": "urn:hub:valueset:lab-cbc", "system": LOINC, "code": "2345-7"}).json()
    assert _param(outsider, "result") is False  # glucose is not
    circulatory = fhir.get("/ValueSet/icd10-cn-circulatory/$validate-code",
                           params={"system": ICD, "code": "I10.x00"}).json()
    assert _param(circulatory, "result") is True
    assert _param(fhir.get("/ValueSet/icd10-cn-circulatory/$validate-code",
                           params={"system": ICD, "code": "E11.900"}).json(), "result") is False


def test_expand_filters_by_chinese_text_pinyin_and_pages(fhir: httpx.Client) -> None:
    full = fhir.get("/ValueSet/lab-cbc/$expand").json()
    total = full["expansion"]["total"]
    assert total >= 15 and len(full["expansion"]["contains"]) == total
    codes = {c["code"] for c in full["expansion"]["contains"]}
    assert {"718-7", "6690-2", "777-3"} <= codes  # haemoglobin, WBC, platelets
    by_text = fhir.get("/ValueSet/$expand", params={"url": "urn:hub:valueset:loinc-cn", "filter": "血红蛋白"}).json()
    assert "718-7" in {c["code"] for c in by_text["expansion"]["contains"]}
    by_initials = fhir.get("/ValueSet/$expand", params={"url": "urn:hub:valueset:loinc-cn", "filter": "xhdb"}).json()
    assert "718-7" in {c["code"] for c in by_initials["expansion"]["contains"]}
    page = fhir.get("/ValueSet/lab-cbc/$expand", params={"offset": 2, "count": 3}).json()["expansion"]
    assert page["total"] == total and page["offset"] == 2 and len(page["contains"]) == 3
    assert [c["code"] for c in page["contains"]] == [c["code"] for c in full["expansion"]["contains"][2:5]]


def test_expand_hierarchy_filter_and_unknown_value_set(fhir: httpx.Client) -> None:
    body = fhir.get("/ValueSet/icd10-cn-circulatory/$expand").json()
    codes = {c["code"] for c in body["expansion"]["contains"]}
    assert "I10.x00" in codes and "I10" in codes and "I00-I99" not in codes  # descendent-of excludes the chapter
    assert not any(c.startswith("E") for c in codes)
    missing = fhir.get("/ValueSet/$expand", params={"url": "urn:hub:valueset:nothing"})
    assert missing.status_code == 404


def test_translate_with_equivalence_and_reverse(fhir: httpx.Client) -> None:
    body = fhir.get("/ConceptMap/$translate", params={"system": SEX, "code": "1"}).json()
    assert _param(body, "result") is True
    match = _parts(_params(body, "match")[0])
    assert match["equivalence"] == "equivalent" and match["concept"]["code"] == "male"
    unstated = _parts(_params(fhir.get("/ConceptMap/$translate", params={"system": SEX, "code": "9"}).json(),
                                 "match")[0])
    assert unstated["equivalence"] == "wider" and unstated["concept"]["code"] == "unknown"
    reverse = fhir.get("/ConceptMap/gb-t-2261.1-to-administrative-gender/$translate", params={
        "system": "http://hl7.org/fhir/administrative-gender", "code": "unknown", "reverse": "true"}).json()
    assert {_parts(m)["concept"]["code"] for m in _params(reverse, "match")} == {"0", "9"}
    none = fhir.get("/ConceptMap/$translate", params={"system": SEX, "code": "7"}).json()
    assert _param(none, "result") is False and "No mapping" in _param(none, "message")


def test_translate_unmapped_modes(fhir: httpx.Client) -> None:
    concept_map = {
        "resourceType": "ConceptMap", "id": "cm-unmapped", "url": "urn:test:cm-unmapped", "status": "active",
        "group": [{"source": "urn:test:a", "target": "urn:test:b",
                   "element": [{"code": "x", "target": [{"code": "y", "equivalence": "equivalent"}]},
                               {"code": "gone", "target": [{"equivalence": "unmatched"}]}],
                   "unmapped": {"mode": "fixed", "code": "other", "display": "其他"}}],
    }
    assert fhir.put("/ConceptMap/cm-unmapped", json=concept_map).status_code == 201
    fixed = fhir.get("/ConceptMap/$translate", params={"url": "urn:test:cm-unmapped", "system": "urn:test:a",
                                                       "code": "zzz"}).json()
    assert _param(fixed, "result") is True
    assert _parts(_params(fixed, "match")[0])["concept"]["code"] == "other"
    unmatched = fhir.get("/ConceptMap/$translate", params={"url": "urn:test:cm-unmapped", "system": "urn:test:a",
                                                           "code": "gone"}).json()
    assert _param(unmatched, "result") is False
    assert _parts(_params(unmatched, "match")[0])["equivalence"] == "unmatched"


def test_subsumes_on_the_icd10_hierarchy(fhir: httpx.Client) -> None:
    def outcome(a: str, b: str) -> str:
        return _param(fhir.get("/CodeSystem/$subsumes", params={"system": ICD, "codeA": a, "codeB": b}).json(),
                      "outcome")

    assert outcome("I10", "I10.x00") == "subsumes"
    assert outcome("I00-I99", "I10.x00") == "subsumes"  # chapter over diagnosis
    assert outcome("I10.x00", "I10") == "subsumed-by"
    assert outcome("I10.x00", "I10.x00") == "equivalent"
    assert outcome("I10.x00", "E11.900") == "not-subsumed"
    assert fhir.get("/CodeSystem/$subsumes", params={"system": ICD, "codeA": "I10", "codeB": "ZZZ"}).status_code == 400


def test_capability_statement_lists_the_terminology_operations(fhir: httpx.Client) -> None:
    resources = {r["type"]: r for r in fhir.get("/metadata").json()["rest"][0]["resource"]}
    assert {o["name"] for o in resources["CodeSystem"]["operation"]} == {"lookup", "validate-code", "subsumes"}
    assert {o["name"] for o in resources["ValueSet"]["operation"]} == {"expand", "validate-code"}
    assert resources["ConceptMap"]["operation"][0]["definition"].endswith("/ConceptMap-translate")


def test_bad_operation_input_is_a_clear_400(fhir: httpx.Client) -> None:
    response = fhir.get("/CodeSystem/$validate-code", params={"url": SEX})
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    response = fhir.post("/ValueSet/$expand", json={"resourceType": "Patient"})
    assert response.status_code == 400
    response = fhir.get("/ValueSet/lab-cbc/$expand", params={"count": "many"})
    assert response.status_code == 400


def test_review_fixes_of_r4_semantics(fhir: httpx.Client) -> None:
    concept = {"coding": [{"system": "urn:hub:code:lis-1:lab-item", "code": "GLU"}, {"system": LOINC, "code": "2345-7"}]}
    both = fhir.post("/CodeSystem/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "url", "valueUri": LOINC}, {"name": "codeableConcept", "valueCodeableConcept": concept}]}).json()
    assert _param(both, "result") is True  # any coding of the concept in the named system
    found_by_held = fhir.post("/CodeSystem/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": concept}]}).json()
    assert _param(found_by_held, "result") is True
    assert _param(fhir.get("/CodeSystem/$subsumes", params={"system": ETHNICITY, "codeA": "1", "codeB": "01"}
                           ).json(), "outcome") == "equivalent"
    assert fhir.get("/CodeSystem/gb-t-2261.1-sex/$validate-code").status_code == 400
    inline = {"resourceType": "ConceptMap", "status": "draft", "group": [
        {"source": "urn:test:x", "target": "urn:test:y", "element": [
            {"code": "a", "target": [{"code": "b", "equivalence": "equivalent"}]}]}]}
    translated = fhir.post("/ConceptMap/$translate", json={"resourceType": "Parameters", "parameter": [
        {"name": "conceptMap", "resource": inline}, {"name": "system", "valueUri": "urn:test:x"},
        {"name": "code", "valueCode": "a"}]}).json()
    match = _params(translated, "match")[0]["part"]
    assert not [p for p in match if p["name"] == "source"]  # an inline map has no url to name
    assert _parts(_params(translated, "match")[0])["concept"]["code"] == "b"
    sex_match = _params(fhir.get("/ConceptMap/$translate", params={"system": SEX, "code": "1"}).json(), "match")[0]
    assert any(p["name"] == "source" and "valueUri" in p for p in sex_match["part"])


def test_inline_value_sets_are_checked_and_regex_is_bounded(fhir: httpx.Client) -> None:
    def expand(compose: Any) -> httpx.Response:
        return fhir.post("/ValueSet/$expand", json={"resourceType": "Parameters", "parameter": [
            {"name": "valueSet", "resource": {"resourceType": "ValueSet", "status": "draft", "compose": compose}}]})

    not_a = expand({"include": [{"system": SEX, "filter": [{"property": "concept", "op": "is-not-a", "value": "x"}]}]})
    assert not_a.json()["expansion"]["total"] == 4  # nothing is an unknown code: every concept is not one
    by_code = expand({"include": [{"system": ICD, "filter": [{"property": "code", "op": "regex", "value": "I10\\..*"}]}]})
    assert "I10.x00" in {c["code"] for c in by_code.json()["expansion"]["contains"]}
    assert expand({"include": [{"system": ICD, "filter": [
        {"property": "display", "op": "regex", "value": "(.|.)*!"}]}]}).status_code in (400, 501)
    assert expand({"include": ["x"]}).status_code == 400
    assert expand({"include": [{"system": "urn:none", "concept": [{"display": "no code"}]}]}).status_code == 400
    bad = fhir.post("/CodeSystem/$validate-code", json={"resourceType": "Parameters", "parameter": [
        {"name": "codeableConcept", "valueCodeableConcept": {"coding": ["x"]}}]})
    assert bad.status_code == 400
    bad = fhir.post("/CodeSystem/$lookup", json={"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": SEX, "code": 1}}]})
    assert bad.status_code == 400
