"""Every error path answers with an OperationOutcome and the right status."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_body_over_limit(fhir: httpx.Client) -> None:
    big = patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + "x" * 3_000_000
                        + "</div>"})
    assert_outcome(fhir.post("/Patient", json=big), 413, contains="limit")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while streaming
        yield b'{"resourceType":"Patient","text":{"status":"generated","div":"<div>'
        for _ in range(300):
            yield b"x" * 10_000
        yield b'</div>"}}'

    assert_outcome(fhir.post("/Patient", content=chunks()), 413, contains="limit")
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
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system", "search-system"}
    patient_caps = next(r for r in rest["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient_caps["searchParam"]}
    assert {"_id", "_lastUpdated", "_tag", "identifier", "family", "birthdate", "general-practitioner"} <= names
    assert not {"_text", "_content", "_query"} & names  # listed only if searches on them are answered
    assert patient_caps["conditionalDelete"] == "single"
    assert "Parameters" not in {r["type"] for r in rest["resource"]}


def test_health(server: str) -> None:
    response = httpx.get(f"{server}/health")
    assert response.status_code == 200 and response.json()["database"] == "ok"


def test_hostile_inputs_are_400_not_500(fhir: httpx.Client) -> None:
    pid = fhir.put("/Patient/h1", json=patient(id="h1")).json()["id"]
    assert_outcome(fhir.get(f"/Patient/{pid}/_history/%C2%B2"), 404)
    assert_outcome(fhir.put(f"/Patient/{pid}", json=patient(id=pid), headers={"If-Match": 'W/"²"'.encode()}), 400)
    assert_outcome(fhir.get("/Patient", params={"_offset": "9" * 25}), 400, contains="_offset")
    assert_outcome(fhir.get("/_history", params={"_offset": "9" * 25}), 400, contains="_offset")
    assert_outcome(fhir.get(f"/Patient/{pid}/_history/{'9' * 25}"), 404)
    assert_outcome(fhir.get("/Patient", params={"_count": "--5"}), 400, contains="_count")
    assert_outcome(fhir.get("/_history", params={"_since": "0001-01-01T00:00:00+01:00"}), 400, contains="_since")
    assert_outcome(fhir.post("/Patient", json=patient(name=[{}])), 400, contains="empty object")
    assert_outcome(fhir.post("/Patient", content=b'{"resourceType":"\\ud800"}'), 400, contains="surrogate")
    nul = b'{"resourceType":"Patient","identifier":[{"value":"a\\u0000b"}]}'
    assert_outcome(fhir.post("/Patient", content=nul), 400, contains="control character")
    deep: dict = {"url": "http://x", "valueString": "y"}
    for _ in range(200):
        deep = {"url": "http://x", "extension": [deep]}
    assert_outcome(fhir.post("/Patient", json=patient(extension=[deep])), 400)
    assert fhir.get("/_history").json()["total"] == 1


def test_big_decimals_are_stored_exactly(fhir: httpx.Client) -> None:
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"x"},'
           b'"valueQuantity":{"value":123456789012345678901234567890}}')
    created = fhir.post("/Observation", content=raw)
    assert created.status_code == 201, created.text
    assert b'"value":123456789012345678901234567890' in fhir.get(f"/Observation/{created.json()['id']}").content


def test_forbidden_json_and_unsafe_narrative(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("/Patient", json=patient(gender=None)), 400, contains="Patient.gender is null")
    assert_outcome(fhir.post("/Patient", json=patient(telecom=[])), 400, contains="empty array")
    aligned = patient(name=[{"given": ["三", None], "_given": [None, {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-qualifier", "valueCode": "CL"}]}]}])
    assert fhir.post("/Patient", json=aligned).status_code == 201
    script = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'}
    assert_outcome(fhir.post("/Patient", json=patient(text=script)), 400, contains="Patient.text.div")
    handler = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><img src="x" onerror="y"/></div>'}
    assert_outcome(fhir.post("/Patient", json=patient(text=handler)), 400, contains="unsafe")
    assert_outcome(fhir.post("/Observation", json={"resourceType": "Observation", "status": "final",
                                                   "code": {"text": "x"}, "subject": {"reference": "urn:uuid:1"}}),
                   400, contains="not resolved")
    ops = [{"op": "add", "path": "/active", "value": None}]
    pid = fhir.put("/Patient/n1", json=patient(id="n1")).json()["id"]
    assert_outcome(fhir.patch(f"/Patient/{pid}", json=ops, headers={"Content-Type": "application/json-patch+json"}),
                   400, contains="null")


def test_error_messages_mask_personal_data(fhir: httpx.Client) -> None:
    id_number = "11010519491231002X"
    for _ in range(2):
        fhir.post("/Patient", json=patient(identifier=[{"system": "urn:gb11643", "value": id_number}]))
    response = fhir.post("/Patient", json=patient(), headers={"If-None-Exist": f"identifier=urn:gb11643|{id_number}"})
    body = assert_outcome(response, 412)
    assert id_number not in response.text and "110105********002X" in body["issue"][0]["diagnostics"]
    bad_code = fhir.post("/Patient", json=patient(gender="13812345678"))
    assert_outcome(bad_code, 400)
    assert "13812345678" not in bad_code.text
