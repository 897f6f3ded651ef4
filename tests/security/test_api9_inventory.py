"""OWASP API9:2023 Improper Inventory Management: every route the app serves is in the
committed OpenAPI document (no hidden or debug endpoints), and every documented one is served."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.fixtures.routes import api_routes

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
UNDOCUMENTED_BY_DESIGN = {"/docs", "/docs/oauth2-redirect", "/openapi.json"}


def test_served_routes_equal_documented_routes(client: TestClient) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in json.loads(COMMITTED.read_text())["paths"].items()
        for method in operations
    }
    served = {
        (method, route.path)
        for route in api_routes(client.app)
        if route.path not in UNDOCUMENTED_BY_DESIGN
        for method in route.methods
        if method != "HEAD"
    }
    assert served == documented


def test_no_debug_or_admin_consoles(client: TestClient) -> None:
    for path in ("/debug", "/admin", "/console", "/.env", "/v0/credit-checks", "/v2/credit-checks"):
        response = client.get(path)
        assert response.status_code == 404, path
    assert not any(
        re.search(r"/(debug|internal|test)\b", route.path) for route in api_routes(client.app)
    )
