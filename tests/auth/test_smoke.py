"""First light: a client gets a token and calls a protected route."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory


def test_token_and_protected_route(client: TestClient, factory: Factory) -> None:
    creds = factory.client("admin:clients")
    token = factory.token(creds)
    response = client.get("/v1/admin/clients?limit=5", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert "items" in response.json()
    assert response.headers["x-request-id"]


def test_missing_token_is_401_problem(client: TestClient) -> None:
    response = client.get("/v1/admin/clients")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["type"].endswith("/problems/unauthorized")
    assert body["request_id"] == response.headers["x-request-id"]
