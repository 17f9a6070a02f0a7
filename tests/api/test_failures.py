"""Failures the client cannot fix: clear OperationOutcomes, no internals, no personal data."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.config import Settings
from hub.fhir.service import FhirService
from tests.conftest import bearer


def test_unreachable_database_is_503_outcome(settings: Settings) -> None:
    unreachable = dataclasses.replace(settings, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    with TestClient(create_app(unreachable)) as client:
        response = client.get("/fhir/Patient/x", headers=bearer())
    assert response.status_code == 503
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "127.0.0.1" not in response.text and "postgres" not in response.text


def test_unexpected_error_is_500_outcome_without_internals(
    settings: Settings, database: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("身份证 110101199003071234 leaked")

    monkeypatch.setattr(FhirService, "read", explode)
    with caplog.at_level(logging.ERROR), TestClient(create_app(settings, database), raise_server_exceptions=False) as client:
        response = client.get("/fhir/Patient/x", headers=bearer())
    assert response.status_code == 500
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    diagnostics = body["issue"][0]["diagnostics"]
    reference = diagnostics.split("reference ")[1].rstrip(")")
    assert "110101199003071234" not in response.text and "Traceback" not in response.text
    assert any(reference in record.getMessage() for record in caplog.records)  # operators can find it


def test_public_base_url_is_used_in_locations(settings: Settings, database: object) -> None:
    public = dataclasses.replace(settings, public_base_url="https://hub.ks.example.cn/fhir")
    with TestClient(create_app(public, database)) as client:
        response = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                               headers={"Content-Type": "application/fhir+json", **bearer()})
    assert response.status_code == 201
    assert response.headers["location"].startswith("https://hub.ks.example.cn/fhir/Patient/")


def test_served_logs_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    import logging.config

    from hub.privacy import logging_config

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logging.config.dictConfig(logging_config())
        logging.getLogger("uvicorn.error").error("client sent 11010519491231002X / 13812345678")
    finally:
        root.handlers[:], root.level = saved
    err = capsys.readouterr().err
    assert "110105********002X" in err and "138****5678" in err
    assert "19491231" not in err and "13812345678" not in err


def test_logs_mask_id_numbers_and_phones() -> None:
    import io

    from hub.privacy import MaskingFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(message)s"))
    logger = logging.getLogger("hub.test.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ValueError("bad row 11010519491231002X phone 13812345678")
    except ValueError:
        logger.exception("rejected %s", "110105194912310021")
    output = stream.getvalue()
    assert "19491231" not in output and "13812345678" not in output
    assert "110105********002X" in output and "138****5678" in output
