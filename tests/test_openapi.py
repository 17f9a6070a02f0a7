"""openapi/openapi.json is the app's spec (regenerate with `hub openapi export`)."""

from __future__ import annotations

import json
from pathlib import Path

from hub.api.app import create_app
from hub.config import Settings

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_exported_spec_equals_the_app() -> None:
    app_spec = create_app(Settings(database_url="sqlite:///:memory:")).openapi()
    exported = json.loads(SPEC.read_text(encoding="utf-8"))
    assert exported == json.loads(json.dumps(app_spec)), "run `hub openapi export` and commit the result"


def test_spec_lists_the_fhir_interactions() -> None:
    paths = json.loads(SPEC.read_text(encoding="utf-8"))["paths"]
    assert {"get", "put", "patch", "delete"} <= set(paths["/fhir/{resource_type}/{resource_id}"])
    assert "post" in paths["/fhir"]
    assert "get" in paths["/fhir/metadata"]
