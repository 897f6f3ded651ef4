"""OWASP API7:2023 Server Side Request Forgery: the API never fetches a URL a client gives.
Client keys are registered inline (``jwks``), never by ``jwks_uri``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.auth.conftest import KeyPair
from tests.fixtures.factories import Factory


def test_jwks_uri_is_not_accepted(client: TestClient, factory: Factory) -> None:
    """A private_key_jwt registration that is valid but for ``jwks_uri``: only that field
    is refused (the inline ``jwks`` is there, so "Required for private_key_jwt" cannot be
    the reason)."""
    admin = factory.headers("admin:clients")
    response = client.post(
        "/v1/admin/clients",
        json={
            "name": "ssrf",
            "scopes": ["credit:check"],
            "purposes": ["ONBOARDING"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": KeyPair().jwks(),
            "jwks_uri": "http://169.254.169.254/latest/meta-data/",
        },
        headers=admin,
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("/problems/validation-failed")
    assert {error["field"] for error in problem["errors"]} == {"jwks_uri"}
    assert "169.254" not in response.text
