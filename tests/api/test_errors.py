"""Every error path answers with an OperationOutcome and the right status."""

from __future__ import annotations

import httpx

from tests.conftest import assert_outcome, patient


def test_unknown_type_and_route(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Unicorn/1"), 404, contains="Unknown resource type")
    assert_outcome(fhir.get("/Unicorn"), 404)
    assert_outcome(fhir.post("/Unicorn", json={"resourceType": "Unicorn"}), 404)
    assert_outcome(fhir.get("/Patient/1/_history/1/extra"), 404)


def test_wrong_method(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("/Patient/1/_history", json={}), 405)
    assert_outcome(fhir.delete("/metadata"), 405)
    assert_outcome(fhir.put("/metadata", json={}), 405)


def test_wrong_content_type(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"}), 415)
    assert_outcome(fhir.post("/Patient", content=b"{}", headers={"Content-Type": "text/plain"}), 415)


def test_not_acceptable(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/metadata", headers={"Accept": "application/fhir+xml"}), 406)
    assert_outcome(fhir.get("/metadata", params={"_format": "xml"}), 406)
    plain = fhir.get("/metadata", headers={"Accept": "application/json"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")


def test_body_over_limit(fhir: httpx.Client, settings: object) -> None:
    big = patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "x" * 3_000_000
                        + "</div>"})
    assert_outcome(fhir.post("/Patient", json=big), 413, contains="limit")
    assert fhir.get("/_history").json()["total"] == 0


def test_malformed_json(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("/Patient", content=b'{"resourceType": "Patient",'), 400, contains="not valid JSON")
    assert_outcome(fhir.post("/Patient", content=b""), 400, contains="empty")
    assert_outcome(fhir.post("/Patient", content=b"[1,2]"), 400, contains="JSON object")
    assert_outcome(fhir.post("/Patient", content=b"\xff\xfe"), 400)


def test_invalid_resources_name_the_element(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("/Patient", json=patient(birthDate="1990-02-30")), 400, contains="Patient.birthDate")
    assert_outcome(fhir.post("/Patient", json=patient(favouriteColour="blue")), 400, contains="Patient.favouriteColour")
    assert_outcome(fhir.post("/Patient", json=patient(gender="M")), 400, contains="Patient.gender")
    assert_outcome(fhir.post("/Encounter", json={"resourceType": "Encounter", "status": "done",
                                                 "class": {"code": "AMB"}}), 400, contains="Encounter.status")
    assert_outcome(fhir.post("/Observation", json={"resourceType": "Observation", "code": {"text": "x"}}),
                   400, contains="Observation.status")
    assert_outcome(fhir.post("/Patient", json={"resourceType": "Observation", "status": "final",
                                               "code": {"text": "x"}}), 400, contains="does not match")
    assert_outcome(fhir.post("/Patient", json={"name": []}), 400, contains="resourceType")
    assert fhir.get("/_history").json()["total"] == 0


def test_bad_search_parameters(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("/Patient", params={"_count": "many"}), 400, contains="_count")
    assert_outcome(fhir.get("/Patient", params={"_id": "bad id!"}), 400, contains="_id")
    assert_outcome(fhir.get("/Patient", params={"identifier": "a|b|c"}), 400, contains="token")
    assert_outcome(fhir.get("/Patient", params={"_history": "x"}), 400)


def test_metadata_is_a_truthful_capability_statement(fhir: httpx.Client) -> None:
    from fhir.resources.R4B.capabilitystatement import CapabilityStatement

    response = fhir.get("/metadata")
    assert response.status_code == 200
    body = response.json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1"
    rest = body["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    patient_caps = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert {p["name"] for p in patient_caps["searchParam"]} == {"_id", "identifier"}
    assert patient_caps["conditionalDelete"] == "single"
    assert "Parameters" not in {r["type"] for r in rest["resource"]}


def test_health(server: str) -> None:
    response = httpx.get(f"{server}/health")
    assert response.status_code == 200 and response.json()["database"] == "ok"
