"""Custom SearchParameter resources, ``hub reindex``, and conditional create on ordinary search parameters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from hub.config import Settings
from tests.conftest import assert_outcome
from tests.search.support import ids, search

HUB = str(Path(sys.executable).with_name("hub"))
MMN_URL = "http://example.org/mmn"
ETHNICITY_URL = "http://example.org/ethnicity"
GB_ETHNICITY = "urn:oid:2.16.156.10011.2.3.3.3"  # GB/T 3304 民族


def _search_parameter(code: str, kind: str, expression: str) -> dict:
    return {
        "resourceType": "SearchParameter", "url": f"http://example.org/fhir/SearchParameter/patient-{code}",
        "name": code.replace("-", "_"), "status": "active", "description": f"Custom parameter {code}",
        "code": code, "base": ["Patient"], "type": kind, "expression": expression,
    }


def _with_mmn(pid: str, maiden_name: str) -> dict:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Zhou"}],
            "extension": [{"url": MMN_URL, "valueString": maiden_name}]}


def _put(fhir: httpx.Client, resource: dict) -> None:
    response = fhir.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert response.status_code in (200, 201), response.text


def _define(fhir: httpx.Client, parameter: dict) -> None:
    response = fhir.post("/SearchParameter", json=parameter)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("code", "expression"),
    [
        pytest.param("mmn-extension-fn", f"Patient.extension('{MMN_URL}').value", id="extension-function"),
        pytest.param("mmn-where-url", f"Patient.extension.where(url='{MMN_URL}').value", id="where-url"),
    ],
)
def test_custom_string_parameter_finds_patients_written_after_it(
    fhir: httpx.Client, code: str, expression: str
) -> None:
    """A new string SearchParameter is unknown (400) until created; then patients written afterwards are found."""
    assert_outcome(fhir.get("/Patient", params={code: "wang"}), 400, contains=code)
    _define(fhir, _search_parameter(code, "string", expression))
    _put(fhir, _with_mmn("pa", "Wang"))
    _put(fhir, _with_mmn("pc", "Li"))
    _put(fhir, {"resourceType": "Patient", "id": "pd", "name": [{"family": "Wang"}]})
    assert ids(search(fhir, "/Patient", {code: "wan"})) == ["pa"]
    assert ids(search(fhir, "/Patient", {code: "LI"})) == ["pc"]
    assert ids(search(fhir, "/Patient", {f"{code}:exact": "Wang"})) == ["pa"]
    assert set(ids(search(fhir, "/Patient", {f"{code}:missing": "true"}))) == {"pd"}
    # the index follows updates of the patient
    _put(fhir, _with_mmn("pa", "Zhao"))
    assert ids(search(fhir, "/Patient", {code: "wan"})) == []
    assert ids(search(fhir, "/Patient", {code: "zhao"})) == ["pa"]


def test_custom_token_parameter(fhir: httpx.Client) -> None:
    """A token SearchParameter on a Coding extension matches system|code and code."""
    expression = f"Patient.extension.where(url='{ETHNICITY_URL}').value"
    _define(fhir, _search_parameter("ethnicity", "token", expression))
    for pid, code in (("han", "01"), ("mongol", "02")):
        _put(fhir, {"resourceType": "Patient", "id": pid,
                    "extension": [{"url": ETHNICITY_URL, "valueCoding": {"system": GB_ETHNICITY, "code": code}}]})
    _put(fhir, {"resourceType": "Patient", "id": "none"})
    assert ids(search(fhir, "/Patient", {"ethnicity": f"{GB_ETHNICITY}|01"})) == ["han"]
    assert ids(search(fhir, "/Patient", {"ethnicity": "02"})) == ["mongol"]
    assert ids(search(fhir, "/Patient", {"ethnicity": "http://other.example|01"})) == []
    assert set(ids(search(fhir, "/Patient", {"ethnicity:not": "01"}))) == {"mongol", "none"}


def _reindex(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HUB_DATABASE_URL=settings.database_url, COLUMNS="200")
    return subprocess.run([HUB, "reindex", *args], env=env, capture_output=True, text=True, timeout=120)


def test_reindex_indexes_patients_written_before_the_parameter(fhir: httpx.Client, settings: Settings) -> None:
    """A patient stored before its SearchParameter is found only after ``hub reindex --type Patient``."""
    code = "mmn-reindexed"
    _put(fhir, _with_mmn("early", "Wang"))
    _put(fhir, _with_mmn("early2", "Li"))
    _put(fhir, {"resourceType": "Observation", "id": "obs", "status": "final", "code": {"text": "血压"}})
    _define(fhir, _search_parameter(code, "string", f"Patient.extension.where(url='{MMN_URL}').value"))
    _put(fhir, _with_mmn("late", "Wang"))
    assert ids(search(fhir, "/Patient", {code: "wang"})) == ["late"]
    done = _reindex(settings, "--type", "Patient")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b3\b", done.stdout + done.stderr), done.stdout + done.stderr  # three patients reindexed
    assert set(ids(search(fhir, "/Patient", {code: "wang"}))) == {"early", "late"}
    assert ids(search(fhir, "/Patient", {code: "li"})) == ["early2"]
    # reindexing changes no resource: no new versions
    assert fhir.get("/Patient/early").json()["meta"]["versionId"] == "1"


def test_conditional_create_uses_ordinary_search_parameters(fhir: httpx.Client) -> None:
    """``If-None-Exist: family=Smith&birthdate=1970-06-01`` finds the existing patient instead of creating one."""
    smith = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["John"]}], "birthDate": "1970-06-01"}
    first = fhir.post("/Patient", json=smith)
    assert first.status_code == 201, first.text
    existing = first.json()["id"]
    criteria = {"If-None-Exist": "family=Smith&birthdate=1970-06-01"}
    again = fhir.post("/Patient", json=smith, headers=criteria)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == existing
    assert len(ids(search(fhir, "/Patient", {"family": "smith"}))) == 1
    other = fhir.post("/Patient", json=smith, headers={"If-None-Exist": "family=Smith&birthdate=1971-01-01"})
    assert other.status_code == 201 and other.json()["id"] != existing
    assert_outcome(fhir.post("/Patient", json=smith, headers={"If-None-Exist": "family=Smith"}), 412)
    assert_outcome(fhir.post("/Patient", json=smith, headers={"If-None-Exist": "nosuch=1"}), 400, contains="nosuch")
