"""Validation without a database: structure, required bindings, element paths."""

from __future__ import annotations

import pytest

from hub.errors import InvalidRequest, Issue, ResourceInvalid
from hub.fhir.bindings import check_required_bindings
from hub.fhir.jsonio import dumps, loads
from hub.fhir.validation import validate_resource


def test_fhir_resources_alone_accepts_bogus_status_but_the_hub_does_not() -> None:
    from fhir.resources.R4B.observation import Observation

    bogus = {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}
    Observation.model_validate(bogus)  # the library's gap the hub closes
    with pytest.raises(ResourceInvalid) as caught:
        validate_resource(bogus)
    assert caught.value.issues[0].expression == ("Observation.status",)


@pytest.mark.parametrize("status", ["registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                    "entered-in-error", "unknown"])
def test_every_observation_status_of_r4_is_accepted(status: str) -> None:
    validate_resource({"resourceType": "Observation", "status": status, "code": {"text": "x"}})


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"resourceType": "Patient", "gender": "F"}, "Patient.gender"),
        ({"resourceType": "Encounter", "status": "open", "class": {"code": "AMB"}}, "Encounter.status"),
        ({"resourceType": "Patient", "telecom": [{"system": "wechat", "value": "x"}]}, "Patient.telecom[0].system"),
        ({"resourceType": "Patient", "name": [{"use": "nick"}]}, "Patient.name[0].use"),
        ({"resourceType": "Patient", "contained": [{"resourceType": "Observation", "status": "x",
                                                    "code": {"text": "y"}}]}, "Patient.contained[0].status"),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient",
                                                                                   "gender": "x"}}]},
         "Bundle.entry[0].resource.gender"),
        ({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
          "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                         "code": "cured"}]}}, "Condition.clinicalStatus"),
        ({"resourceType": "Condition", "subject": {"reference": "Patient/1"},
          "verificationStatus": {"text": "确诊"}}, "Condition.verificationStatus"),
    ],
)
def test_required_bindings_name_the_element(resource: dict, path: str) -> None:
    issues = check_required_bindings(resource)
    assert [i.expression for i in issues] == [(path,)]
    assert all(i.code == "code-invalid" for i in issues)


def test_structure_errors_name_every_element() -> None:
    with pytest.raises(ResourceInvalid) as caught:
        validate_resource({"resourceType": "Patient", "birthDate": "1990-13-01", "name": [{"given": [1]}], "x": 1})
    paths = {e for i in caught.value.issues for e in i.expression}
    assert {"Patient.birthDate", "Patient.name[0].given[0]", "Patient.x"} <= paths


def test_not_a_resource() -> None:
    with pytest.raises(InvalidRequest):
        validate_resource([1])
    with pytest.raises(InvalidRequest):
        validate_resource({"resourceType": "Parameters"})  # no RESTful endpoint
    with pytest.raises(InvalidRequest):
        validate_resource({"resourceType": "Patient"}, expected_type="Observation")


def test_issue_prefix_for_bundle_entries() -> None:
    issue = Issue("value", "bad", "error", ("Patient.name[0]", "resourceType"))
    assert issue.prefixed("Bundle.entry[2].resource").expression == (
        "Bundle.entry[2].resource.name[0]", "Bundle.entry[2].resource.resourceType")


def test_json_keeps_decimals_and_chinese() -> None:
    parsed = loads('{"a": 1.50, "b": 1e2, "c": "张三"}'.encode())
    assert dumps(parsed) == '{"a":1.50,"b":1E+2,"c":"张三"}'.encode()
