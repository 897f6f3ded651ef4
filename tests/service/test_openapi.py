"""The committed openapi/openapi.json is exactly what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from service.openapi_export import render_openapi

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_document_is_current() -> None:
    assert COMMITTED.read_text() == render_openapi(), (
        "run `make openapi` and commit openapi/openapi.json"
    )


def test_served_document_equals_committed(client: TestClient) -> None:
    assert client.get("/openapi.json").json() == json.loads(COMMITTED.read_text())
