"""OWASP API7:2023 Server Side Request Forgery: the API never fetches a URL a client gives.
Client keys are registered inline (``jwks``), never by ``jwks_uri``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory


def test_jwks_uri_is_not_accepted(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    response = client.post(
        "/v1/admin/clients",
        json={
            "name": "ssrf",
            "scopes": ["credit:check"],
            "purposes": ["ONBOARDING"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "http://169.254.169.254/latest/meta-data/",
        },
        headers=admin,
    )
    assert response.status_code == 422
    assert "169.254" not in response.text
