"""OWASP API5:2023 Broken Function Level Authorization: every /v1 route, called by every
role that lacks its scope, is refused (403), and without a token is 401."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from schemas.enums import Scope
from tests.fixtures.factories import Factory
from tests.fixtures.routes import api_routes

ROLES = {
    "platform": "credit:check credit:detail credit:pii",
    "admin_clients": "admin:clients",
    "admin_data": "admin:data",
    "compliance": "audit:read",
}


def _routes(client: TestClient) -> list[tuple[str, str, set[str]]]:
    found = []
    for route in api_routes(client.app):
        if not route.path.startswith("/v1"):
            continue
        path = re.sub(r"\{uscc\}", "91440300708461136T", route.path)
        path = re.sub(r"\{[^}]+\}", "placeholder", path)
        for method in sorted(route.methods):
            found.append((method, path, set(route.scopes)))
    return found


@pytest.fixture(scope="module")
def role_headers(app_client: TestClient) -> dict[str, dict[str, str]]:
    factory = Factory(app_client)
    return {role: factory.headers(scopes) for role, scopes in ROLES.items()}


def test_every_route_refuses_roles_without_its_scope(
    client: TestClient, role_headers: dict[str, dict[str, str]]
) -> None:
    checked = 0
    for method, path, scopes in _routes(client):
        assert client.request(method, path).status_code == 401, (method, path)
        for role, granted in ROLES.items():
            if scopes <= set(granted.split()):
                continue
            response = client.request(method, path, headers=role_headers[role])
            assert response.status_code == 403, (role, method, path, response.status_code)
            checked += 1
    assert checked > 20


def test_all_scopes_are_known() -> None:
    assert {s for scopes in ROLES.values() for s in scopes.split()} == {s.value for s in Scope}
