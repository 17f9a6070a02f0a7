"""Failures the client cannot fix: clear OperationOutcomes, no internals, no personal data."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from hub.api.app import create_app
from hub.config import Settings
from hub.fhir.service import FhirService


def test_unreachable_database_is_503_outcome() -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none")
    with TestClient(create_app(settings)) as client:
        response = client.get("/fhir/Patient/x")
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
        response = client.get("/fhir/Patient/x")
    assert response.status_code == 500
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "reference" in body["issue"][0]["diagnostics"]
    assert "110101199003071234" not in response.text and "Traceback" not in response.text


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
