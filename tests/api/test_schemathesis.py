"""Schemathesis against the exported OpenAPI (openapi/openapi.json): no generated request gets a 5xx.

The requests go to the real hub on uvicorn (the ``server`` fixture) with the admin bearer token, so they get
past authentication into the FHIR service and the database.

Two passes over the spec:

* ``test_spec_requests_get_no_server_error``: the cases schemathesis derives from the spec alone (every
  phase: examples, coverage, fuzzing).
* ``test_fhir_requests_get_no_server_error``: the FHIR operations again, but with the generated path parameters
  swapped for resource types and ids the hub knows, and with search parameters, bodies and FHIR headers drawn
  by Hypothesis. The spec cannot describe these (the FHIR routes read the raw query and body), and with
  random resource types almost every request would stop at the 404 of an unknown type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from hub.store.database import Database
from tests.conftest import bearer, fhir_client

SPEC = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SCHEMA = schemathesis.openapi.from_path(SPEC)
FHIR_OPERATIONS = SCHEMA.include(path_regex=r"^/fhir")

HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)


def _describe(case: schemathesis.Case, response: Any) -> str:
    request = response.request
    body = request.body if isinstance(request.body, bytes | None) else str(request.body).encode()
    return (f"{case.operation.label}: {request.method} {request.url}\nrequest headers: {dict(request.headers)}\n"
            f"request body: {(body or b'')[:2000]!r}\n-> {response.status_code} {response.text[:2000]}")


def _check(case: schemathesis.Case, response: Any) -> None:
    """No 5xx; any FHIR answer with a body (errors included) is JSON."""
    assert response.status_code < 500, _describe(case, response)
    case.validate_response(response, checks=[not_a_server_error])
    if case.path.startswith("/fhir") and response.content:
        try:
            json.loads(response.content)
        except ValueError as exc:
            raise AssertionError(f"not JSON: {_describe(case, response)}") from exc


#: Headers that frame the HTTP message itself. Hypothesis draws string constants of the code under test (such as
#: ``transfer-encoding`` of hub/fhir/subscriptions.py) as header names; with an empty ``Transfer-Encoding`` uvicorn
#: refuses the request with its own plain-text 400 before the hub sees it — the HTTP server's parser, not the hub.
TRANSPORT_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "host", "te", "upgrade",
                               "keep-alive", "trailer", "expect"})


def _without_transport_headers(case: schemathesis.Case) -> None:
    for name in [n for n in (case.headers or {}) if n.lower() in TRANSPORT_HEADERS]:
        del case.headers[name]


@SCHEMA.parametrize()
@HYPOTHESIS
def test_spec_requests_get_no_server_error(case: schemathesis.Case, server: str, database: Database) -> None:
    _without_transport_headers(case)
    response = case.call(base_url=server, headers=bearer(), timeout=60)
    _check(case, response)


# --- FHIR-aware values --------------------------------------------------------------------------------------------

TYPES = ["Patient", "Observation", "Encounter", "Organization", "Condition", "AuditEvent", "Binary", "Bundle",
         "SearchParameter"]
SEEDED_IDS = ["p1", "p2", "o1", "e1", "org1"]
MRN = "urn:hub:mrn:org-ks-1"

SEED: list[dict] = [
    {"resourceType": "Organization", "id": "org1", "name": "昆山市第一人民医院"},
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "张", "given": ["三"]}], "gender": "male",
     "birthDate": "1980-05-01", "identifier": [{"system": MRN, "value": "A1"}],
     "managingOrganization": {"reference": "Organization/org1"}},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "O'Brien", "given": ["Ann"]}], "gender": "female"},
    {"resourceType": "Encounter", "id": "e1", "status": "finished",
     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
     "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Observation", "id": "o1", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "subject": {"reference": "Patient/p1"},
     "encounter": {"reference": "Encounter/e1"}, "effectiveDateTime": "2024-03-01T08:00:00+08:00",
     "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
]

PARAM_NAMES = [
    "_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content", "_text", "_count", "_sort",
    "_include", "_revinclude", "_elements", "_summary", "_total", "_since", "_at", "_type", "_format", "_offset",
    "_after", "_before", "_bound", "_has:Observation:patient:code", "_list", "_filter", "_query", "_contained",
    "name", "family", "given", "identifier", "birthdate", "gender", "general-practitioner", "organization",
    "address-city", "active", "telecom", "code", "date", "subject", "patient", "encounter", "value-quantity",
    "component-code-value-quantity", "code-value-concept", "status", "category", "value-string", "class",
    "subject:Patient.name", "patient:Patient.identifier", "subject.name", "name:exact", "name:contains",
    "name:missing", "code:not", "code:text", "code:in", "code:below", "subject:missing", "identifier:of-type",
    "birthdate:missing", "value-quantity:missing", "_id:not", "subject:Patient", "unknown-param", "name:bogus",
]
PARAM_VALUES = [
    "", "p1", "Patient/p1", "Patient/nope", "张", "O'Brien", "male", f"{MRN}|A1", "|A1", f"{MRN}|", "A1",
    "http://loinc.org|8480-6", "8480-6", "true", "false", "1980", "1980-05", "1980-05-01", "ge1980-01-01",
    "lt2024-03-01T08:00:00+08:00", "sa2020", "eb2030-01-01T00:00:00Z", "2024-13-45", "ge", "gt120", "120",
    "le1e400", "120|http://unitsofmeasure.org|mm[Hg]", "-1", "0", "99999999999999999999", "NaN",
    "http://loinc.org|8480-6$gt100", "$", "name", "-name", "_lastUpdated", "-_lastUpdated", "birthdate,-_id",
    "Observation:subject", "Observation:patient:Patient", "*", "Observation:subject:iterate", "Patient:link",
    "count", "data", "text", "true,false", "accurate", "Patient,Observation", "id,name", ",", "|", "||", "\\,",
    "a" * 300,
]
HEADER_TEXT = st.from_regex(r"\A([!-~]([ -~]{0,38}[!-~])?)?\Z")  # what HTTP clients can send
TEXT = st.text(max_size=40)
FHIR_ID = st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z")


def _json_values(depth: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                        max_leaves=depth)


JSON_VALUES = _json_values()
REFERENCES = st.sampled_from(["Patient/p1", "Patient/nope", "Encounter/e1", "Organization/org1", "urn:uuid:1",
                              "http://other.example/fhir/Patient/1", "#contained", "Patient/", "", "Patient/p1/_history/1"]) | TEXT
DATES = st.sampled_from(["1980-05-01", "2024-03-01T08:00:00+08:00", "2024-02-30", "2024", "1980-05-01T25:00:00Z",
                         "not a date", ""]) | TEXT


@st.composite
def _resource(draw: st.DrawFn, resource_type: str | None = None) -> dict:
    """A resource that is valid, nearly valid, or not at all."""
    rtype = resource_type or draw(st.sampled_from(TYPES))
    kind = draw(st.sampled_from(["seed", "fields", "random"]))
    if kind == "seed":
        same = [r for r in SEED if r["resourceType"] == rtype]
        resource = dict(draw(st.sampled_from(same))) if same else {"resourceType": rtype}
        if draw(st.booleans()):
            resource.pop("id", None)
        return resource
    if kind == "random":
        return draw(st.dictionaries(st.sampled_from(["resourceType", "id", "meta", "name", "text", "contained"]) | TEXT,
                                    JSON_VALUES, max_size=4))
    fields = {
        "id": FHIR_ID | TEXT, "meta": st.fixed_dictionaries({}, optional={
            "versionId": st.sampled_from(["1", "x"]), "tag": JSON_VALUES,
            "profile": st.lists(TEXT, max_size=2), "security": JSON_VALUES}),
        "name": st.lists(st.fixed_dictionaries({}, optional={"family": TEXT, "given": st.lists(TEXT, max_size=2),
                                                              "text": TEXT}), max_size=2) | JSON_VALUES,
        "identifier": st.lists(st.fixed_dictionaries({}, optional={"system": TEXT, "value": TEXT}), max_size=2),
        "gender": st.sampled_from(["male", "female", "other", "unknown", "bogus"]),
        "birthDate": DATES, "effectiveDateTime": DATES,
        "status": st.sampled_from(["final", "finished", "active", "bogus"]),
        "code": st.fixed_dictionaries({}, optional={"coding": st.lists(st.fixed_dictionaries(
            {}, optional={"system": TEXT, "code": TEXT}), max_size=2), "text": TEXT}),
        "subject": st.fixed_dictionaries({"reference": REFERENCES}),
        "managingOrganization": st.fixed_dictionaries({"reference": REFERENCES}),
        "valueQuantity": st.fixed_dictionaries({}, optional={
            "value": st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
            "system": TEXT, "code": TEXT}),
        "contained": st.lists(st.deferred(lambda: _resource()), max_size=1),
        "text": st.fixed_dictionaries({"status": st.just("generated"), "div": TEXT}),
        "extension": JSON_VALUES,
    }
    resource: dict = {"resourceType": rtype}
    resource.update(draw(st.fixed_dictionaries({}, optional=fields)))
    return resource


PATCH_PATHS = st.sampled_from(["/name", "/name/0/family", "/name/-", "/id", "/resourceType", "/meta/versionId",
                               "/birthDate", "/-", "", "/", "/a~1b", "/name/99", "/name/0/given/0", "/~2"]) | TEXT
PATCHES = st.lists(
    st.fixed_dictionaries({"op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
                           "path": PATCH_PATHS}, optional={"value": JSON_VALUES, "from": PATCH_PATHS}),
    max_size=4) | JSON_VALUES


@st.composite
def _entry(draw: st.DrawFn) -> dict:
    entry: dict = {}
    if draw(st.booleans()):
        entry["fullUrl"] = draw(st.sampled_from(["urn:uuid:9a7c7a1e-0000-4000-8000-000000000001", "Patient/p1"])
                                | TEXT)
    if draw(st.booleans()):
        entry["resource"] = draw(_resource())
    url = st.sampled_from(["Patient", "Patient/p1", "Patient/nope", "Patient?name=张", "Observation?subject=Patient/p1",
                           "Observation/o1/_history/1", "Patient/p1/_history", "metadata", "", "/", "../x",
                           "Patient/$everything", "Patient?_id=p1&_sort=bogus"]) | TEXT
    entry["request"] = draw(st.fixed_dictionaries(
        {"method": st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "bogus"]), "url": url},
        optional={"ifMatch": st.sampled_from(['W/"1"', '"1"', "*", "junk"]), "ifNoneExist": st.just("identifier=A1")
                  | TEXT, "ifNoneMatch": TEXT, "ifModifiedSince": DATES}))
    return entry


BUNDLES = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle"),
     "type": st.sampled_from(["transaction", "batch", "collection", "searchset", "bogus"]),
     "entry": st.lists(_entry(), max_size=4)}) | JSON_VALUES


def _mostly(known: list[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Three times in four a value of ``known``, else one of ``other``."""
    return st.one_of(st.sampled_from(known), st.sampled_from(known), st.sampled_from(known), other)


QUERIES = st.lists(st.tuples(_mostly(PARAM_NAMES, TEXT), _mostly(PARAM_VALUES, TEXT)), max_size=4)
FHIR_HEADERS = st.fixed_dictionaries({}, optional={
    "Prefer": st.sampled_from(["return=representation", "return=minimal", "return=OperationOutcome",
                               "handling=strict", "handling=lenient", "respond-async"]) | HEADER_TEXT,
    "If-Match": st.sampled_from(['W/"1"', 'W/"2"', '"1"', "*", "W/", 'W/"x"']) | HEADER_TEXT,
    "If-None-Exist": st.sampled_from(["identifier=urn:hub:mrn:org-ks-1|A1", "name=%E5%BC%A0", "_id=p1", "bogus=1", ""])
    | HEADER_TEXT,
    "If-None-Match": st.sampled_from(['W/"1"', "*"]) | HEADER_TEXT,
    "If-Modified-Since": st.sampled_from(["Sat, 01 Jan 2000 00:00:00 GMT", "junk"]) | HEADER_TEXT,
    "Accept": _mostly(["application/fhir+json", "application/json", "*/*", "application/fhir+json;q=0.9, */*;q=0.1"],
                      st.sampled_from(["application/xml", "text/html"]) | HEADER_TEXT),
})
CONTENT_TYPES = st.sampled_from(["application/fhir+json", "application/json", "application/json-patch+json",
                                 "application/x-www-form-urlencoded", "text/plain", "application/fhir+json; charset=latin1"])


def _path_value(name: str) -> st.SearchStrategy[str]:
    if name in ("resource_type", "compartment_type"):
        return st.sampled_from(TYPES) | st.sampled_from(["metadata", "_history", "patient", "Resource"])
    if name in ("resource_id", "patient_id"):
        return st.sampled_from(SEEDED_IDS) | FHIR_ID | TEXT.filter(bool)
    if name == "version_id":
        return st.sampled_from(["1", "2", "0", "-1", "99999999999999999999", "1.5", "W/\"1\""]) | TEXT.filter(bool)
    return TEXT.filter(bool)


@st.composite
def _body(draw: st.DrawFn, case: schemathesis.Case, resource_type: str | None) -> tuple[bytes, str] | None:
    """A body and Content-Type for writes; ``None`` for reads."""
    method = case.method.upper()
    if method in ("GET", "DELETE"):
        return None
    if case.path.endswith("/_search"):
        return urlencode(draw(QUERIES)).encode(), draw(st.just("application/x-www-form-urlencoded") | CONTENT_TYPES)
    if method == "PATCH":
        payload: Any = draw(PATCHES)
        content_type = draw(st.just("application/json-patch+json") | CONTENT_TYPES)
    elif case.path == "/fhir":
        payload = draw(BUNDLES)
        content_type = draw(st.just("application/fhir+json") | CONTENT_TYPES)
    else:
        payload = draw(_resource(resource_type) | _resource())
        content_type = draw(st.just("application/fhir+json") | CONTENT_TYPES)
    raw = json.dumps(payload, ensure_ascii=False).encode()
    mangle = draw(st.sampled_from(["none", "none", "none", "truncate", "junk", "empty", "latin1"]))
    if mangle == "truncate":
        raw = raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif mangle == "junk":
        raw = draw(st.binary(max_size=60))
    elif mangle == "empty":
        raw = b""
    elif mangle == "latin1":
        raw = json.dumps(payload, ensure_ascii=False).encode("latin-1", "replace")
    return raw, content_type


@pytest.fixture
def seeded(server: str, database: Database) -> Iterator[None]:
    """A few linked resources, so ids and references in the generated requests can hit something."""
    with fhir_client(server) as client:
        for resource in SEED:
            response: httpx.Response = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
            assert response.status_code in (200, 201), response.text
    yield


@FHIR_OPERATIONS.parametrize()
@FHIR_OPERATIONS.given(data=st.data())
@HYPOTHESIS
def test_fhir_requests_get_no_server_error(case: schemathesis.Case, data: st.DataObject, server: str,
                                           seeded: None) -> None:
    _without_transport_headers(case)
    for name in list(case.path_parameters or {}):
        case.path_parameters[name] = data.draw(_path_value(name), label=name)
    resource_type = (case.path_parameters or {}).get("resource_type")
    query = data.draw(QUERIES, label="query")
    headers = {**data.draw(FHIR_HEADERS, label="headers"), **bearer()}
    kwargs: dict[str, Any] = {}
    body = data.draw(_body(case, resource_type), label="body")
    if body is not None:
        kwargs["data"], headers["Content-Type"] = body
    response = case.call(base_url=server, headers=headers, params=urlencode(query), timeout=60, **kwargs)
    _check(case, response)
