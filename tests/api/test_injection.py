"""SQL-injection and path-traversal strings are harmless wherever a client can put them.

Each hostile value goes into one place (a search value of each parameter type, a parameter name, a resource id
in the read, vread and history paths, ``_type`` of the system search, a form-posted search). The answer must be a
client error or an ordinary result -- never a 5xx, always a JSON OperationOutcome or Bundle, never file
contents -- and afterwards the store must be as it was: the resources written before the attack are still
there, unchanged, and the counts are the same.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from hub.store.database import Database
from tests.conftest import MRN, bearer, patient

JSON_TYPES = ("application/fhir+json", "application/json")

HOSTILE = [
    pytest.param("' OR '1'='1", id="quote-or"),
    pytest.param("' OR 1=1 --", id="quote-or-comment"),
    pytest.param('" OR ""="', id="double-quote-or"),
    pytest.param("1; DROP TABLE hub_resource; --", id="drop-table"),
    pytest.param("%27%20OR%201=1", id="percent-encoded-or"),
    pytest.param("Robert'); DROP TABLE hub_resource;--", id="bobby-tables"),
    pytest.param("' UNION SELECT content FROM hub_resource --", id="union-select"),
    pytest.param("'; SELECT pg_sleep(5); --", id="stacked-sleep"),
    pytest.param("../../etc/passwd", id="dot-dot"),
    pytest.param("..%2F..%2Fetc%2Fpasswd", id="dot-dot-encoded"),
    pytest.param("..\\..\\windows\\win.ini", id="dot-dot-backslash"),
    pytest.param("/etc/passwd", id="absolute-path"),
    pytest.param("file:///etc/passwd", id="file-url"),
    pytest.param("\x00", id="nul"),
    pytest.param("a\x00' OR '1'='1", id="nul-then-injection"),
    pytest.param("n\x00' OR '1'='1", id="nul-then-injection-2"),
    pytest.param("%", id="like-percent"),
    pytest.param("_", id="like-underscore"),
    pytest.param("\\", id="backslash"),
    pytest.param("A" * 10_000, id="10k-chars"),
    pytest.param("' OR '1'='1' -- " + "A" * 10_000, id="10k-injection"),
    pytest.param("＇ ＯＲ １=１", id="fullwidth-or"),
    pytest.param("ʼ OR ʼ1ʼ=ʼ1", id="modifier-apostrophe-or"),
    pytest.param("\u202e' OR 1=1 --", id="rtl-override"),
]

#: Values that are ordinary text: a resource may contain them, and a search must then find exactly that one.
STORABLE = [p for p in HOSTILE if "\x00" not in p.values[0]]

VICTIMS: list[dict] = [
    {**patient(identifier=[{"system": MRN, "value": "V1"}], birthDate="1980-05-01"), "id": "victim"},
    {"resourceType": "Patient", "id": "obrien", "name": [{"family": "O'Brien", "given": ["Ann"]}], "gender": "female"},
    {"resourceType": "Observation", "id": "obs", "status": "final",
     "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}, "subject": {"reference": "Patient/victim"}},
]
PATIENTS = sum(1 for v in VICTIMS if v["resourceType"] == "Patient")


def rows(database: Database) -> int:
    """The rows of hub_resource, counted in SQL (the table an injection would drop)."""
    with database.engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM hub_resource")).scalar_one()


@pytest.fixture
def store(fhir: httpx.Client, database: Database) -> Iterator[dict[str, dict]]:
    """The victims, written before the attack; ``Type/id`` → the resource as the server returned it.

    After the test: every victim reads back unchanged and the counts are the same.
    """
    stored = {}
    for resource in VICTIMS:
        response = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code == 201, response.text
        stored[f"{resource['resourceType']}/{resource['id']}"] = response.json()
    before = rows(database)
    assert before == len(VICTIMS)
    yield stored
    assert_intact(fhir, stored)
    assert rows(database) == before


def assert_intact(fhir: httpx.Client, stored: dict[str, dict]) -> None:
    """Every victim reads back unchanged, and the counts are what they were."""
    for ref, before in stored.items():
        response = fhir.get(f"/{ref}")
        assert response.status_code == 200, f"{ref} is gone: {response.status_code} {response.text[:300]}"
        assert response.json() == before
    patients = fhir.get("/Patient", params={"_summary": "count"})
    assert patients.status_code == 200 and patients.json()["total"] == PATIENTS, patients.text[:300]
    history = fhir.get("/_history", params={"_count": "1"})
    assert history.status_code == 200 and history.json()["total"] == len(VICTIMS), history.text[:300]


def escape(value: str) -> str:
    """``value`` as a FHIR search value (``\\``, ``,``, ``|`` and ``$`` escaped)."""
    for char in "\\,|$":
        value = value.replace(char, "\\" + char)
    return value


def harmless(response: httpx.Response) -> dict:
    """Not a server error; a JSON OperationOutcome or Bundle; no file contents. Returns the body."""
    shown = f"{response.request.method} {str(response.request.url)[:300]} -> {response.status_code}"
    assert response.status_code < 500, f"{shown}: {response.text[:1000]}"
    assert response.headers.get("content-type", "").startswith(JSON_TYPES), f"{shown}: {response.headers}"
    body = response.json()
    assert body.get("resourceType") in ("OperationOutcome", "Bundle"), f"{shown}: {response.text[:500]}"
    assert "root:" not in response.text and "[fonts]" not in response.text, f"{shown}: file contents?"
    return body


def finds_nothing(response: httpx.Response, *, refusal_ok: bool = True) -> None:
    """A refusal (4xx OperationOutcome) or an empty searchset -- never the stored resources.

    Without ``refusal_ok`` only a value with a control character may be refused (400 naming it);
    anything else must be searched as text.
    """
    body = harmless(response)
    if response.status_code == 400 and "control character" in response.text:
        return
    if response.status_code == 200:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
        assert body["total"] == 0 and not body.get("entry"), f"{response.request.url}: {body}"
    else:
        assert refusal_ok, f"{response.status_code}: {response.text[:500]}"
        assert 400 <= response.status_code < 500 and body["resourceType"] == "OperationOutcome", body


# --- search values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
def test_string_search_finds_nothing(fhir: httpx.Client, store: dict, value: str) -> None:
    """A string parameter compares the value as text: an empty searchset, not every patient
    (a NUL cannot be text: refused with 400, where SQLite's LIKE would stop reading at it)."""
    for name in ("name", "family", "name:exact", "name:contains"):
        finds_nothing(fhir.get("/Patient", params={name: value}), refusal_ok=False)


@pytest.mark.parametrize("value", HOSTILE)
def test_token_search_finds_nothing(fhir: httpx.Client, store: dict, value: str) -> None:
    for query in (value, f"{MRN}|{value}", f"{value}|V1", f"|{value}"):
        finds_nothing(fhir.get("/Patient", params={"identifier": query}))
    finds_nothing(fhir.get("/Observation", params={"code": f"http://loinc.org|{value}"}))


@pytest.mark.parametrize("value", HOSTILE)
def test_date_search_is_refused(fhir: httpx.Client, store: dict, value: str) -> None:
    for query in (value, f"ge{value}"):
        response = fhir.get("/Patient", params={"birthdate": query})
        harmless(response)
        assert response.status_code == 400, response.text[:500]


@pytest.mark.parametrize("value", HOSTILE)
def test_reference_search_finds_nothing(fhir: httpx.Client, store: dict, value: str) -> None:
    for query in (value, f"Patient/{value}"):
        finds_nothing(fhir.get("/Observation", params={"subject": query}))


@pytest.mark.parametrize("value", HOSTILE)
def test_chained_search_finds_nothing(fhir: httpx.Client, store: dict, value: str) -> None:
    finds_nothing(fhir.get("/Observation", params={"subject:Patient.name": value}), refusal_ok=False)
    finds_nothing(fhir.get("/Observation", params={"patient.identifier": f"{MRN}|{value}"}))


@pytest.mark.parametrize("value", HOSTILE)
def test_id_search_finds_nothing(fhir: httpx.Client, store: dict, value: str) -> None:
    finds_nothing(fhir.get("/Patient", params={"_id": value}))
    finds_nothing(fhir.get("", params={"_id": value}))


CONTROL = ["_sort", "_include", "_revinclude", "_elements", "_summary", "_total", "_count", "_offset", "_lastUpdated",
           "_tag", "_profile", "_security", "_source", "_content", "_text", "_has:Observation:patient:code"]


@pytest.mark.parametrize("value", HOSTILE)
def test_control_and_common_parameters(fhir: httpx.Client, store: dict, value: str) -> None:
    """Refused, or answered from the stored patients only (never more than there are)."""
    for name in CONTROL:
        response = fhir.get("/Patient", params={name: value})
        body = harmless(response)
        if body["resourceType"] == "Bundle":
            assert body["type"] == "searchset", response.request.url
            assert body.get("total", 0) <= PATIENTS, (str(response.request.url), body)
            matches = [e for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"]
            assert {e["resource"]["resourceType"] for e in matches} <= {"Patient"}, response.request.url


@pytest.mark.parametrize("value", HOSTILE)
def test_as_parameter_name(fhir: httpx.Client, store: dict, value: str) -> None:
    """An unknown parameter is refused; with ``handling=lenient`` it is ignored (every patient, no more)."""
    strict = fhir.get("/Patient", params={value: "x"})
    harmless(strict)
    assert strict.status_code == 400, strict.text[:500]
    lenient = fhir.get("/Patient", params={value: "x"}, headers={"Prefer": "handling=lenient"})
    body = harmless(lenient)
    if lenient.status_code == 200:
        assert body["total"] == PATIENTS, body
    for modifier in (f"name:{value}", f"subject:{value}.name", f"{value}:Patient.name"):
        harmless(fhir.get("/Observation", params={modifier: "x"}))


@pytest.mark.parametrize("value", HOSTILE)
def test_system_search_type(fhir: httpx.Client, store: dict, value: str) -> None:
    finds_nothing(fhir.get("", params={"_type": value}))
    finds_nothing(fhir.get("", params={"_type": f"Patient,{value}"}))


@pytest.mark.parametrize("value", HOSTILE)
def test_form_posted_search(fhir: httpx.Client, store: dict, value: str) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    finds_nothing(fhir.post("/Patient/_search", data={"name": value}, headers=form), refusal_ok=False)
    finds_nothing(fhir.post("/Patient/_search", data={"identifier": f"{MRN}|{value}"}, headers=form))


# --- resource ids in paths ---------------------------------------------------------------------------------------


PATHS = ["/Patient/{}", "/Patient/{}/_history", "/Patient/{}/_history/1", "/Patient/victim/_history/{}",
         "/Patient/{}/$everything", "/Patient/{}/Observation", "/Patient/victim/{}", "/{}", "/{}/victim",
         "/{}/_history"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_ids_in_paths(fhir: httpx.Client, store: dict, value: str) -> None:
    """Percent-encoded into one path segment (read, vread, history, compartment, type): refused or not found."""
    for template in PATHS:
        response = fhir.get(template.format(quote(value, safe="")))
        body = harmless(response)
        assert 400 <= response.status_code < 500, f"{response.request.url}: {response.status_code} {response.text[:300]}"
        assert body["resourceType"] == "OperationOutcome"
    for method in ("DELETE", "PATCH", "PUT"):  # writes to a hostile id are refused and change nothing
        response = fhir.request(method, f"/Patient/{quote(value, safe='')}", json=patient())
        harmless(response)
        assert 400 <= response.status_code < 500, f"{method} {response.request.url}: {response.text[:300]}"


TRAVERSALS = ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "..%252F..%252Fetc%252Fpasswd", "%2e%2e/%2e%2e/etc/passwd",
              "....//....//etc/passwd", "..;/..;/etc/passwd", "/etc/passwd", "..\\..\\etc\\passwd"]


@pytest.mark.parametrize("value", TRAVERSALS)
def test_raw_traversal_in_paths(fhir: httpx.Client, store: dict, value: str) -> None:
    """Sent as written (``..`` segments, slashes and escapes untouched): still a JSON 4xx, never a file.

    httpx removes ``..`` segments before sending, so these go through http.client, which sends the target verbatim.
    """
    base = httpx.URL(str(fhir.base_url))
    for template in ("/Patient/{}", "/Patient/victim/_history/{}", "/Patient/{}/_history/1", "/{}"):
        target = base.path.rstrip("/") + template.format(value).replace("\\", "%5C")
        connection = http.client.HTTPConnection(base.host, base.port, timeout=60)
        try:
            connection.request("GET", target, headers=bearer())
            answer = connection.getresponse()
            status, content_type, raw = answer.status, answer.getheader("content-type", ""), answer.read()
        finally:
            connection.close()
        shown = f"GET {target} -> {status}: {raw[:300]!r}"
        assert 400 <= status < 500, shown
        assert content_type.startswith(JSON_TYPES), shown
        assert json.loads(raw)["resourceType"] == "OperationOutcome", shown
        assert b"root:" not in raw, shown


# --- hostile text stored as data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", STORABLE)
def test_hostile_text_is_stored_and_found_as_data(fhir: httpx.Client, value: str) -> None:
    """A family name that looks like SQL is just a name: stored as sent, found by exactly that name."""
    bystander = fhir.put("/Patient/victim", json=VICTIMS[0])
    assert bystander.status_code == 201, bystander.text
    created = fhir.post("/Patient", json={"resourceType": "Patient", "name": [{"family": value}],
                                          "identifier": [{"system": MRN, "value": value}]})
    assert created.status_code == 201, created.text[:500]
    assert created.json()["name"][0]["family"] == value
    pid = created.json()["id"]
    read = fhir.get(f"/Patient/{pid}")
    assert read.status_code == 200 and read.json()["name"][0]["family"] == value
    for params in ({"family:exact": escape(value)}, {"identifier": f"{MRN}|{escape(value)}"}):
        bundle = fhir.get("/Patient", params=params).json()
        assert bundle.get("total") == 1 and bundle["entry"][0]["resource"]["id"] == pid, (params, bundle)
    assert fhir.get("/Patient/victim").status_code == 200
    assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == 2
