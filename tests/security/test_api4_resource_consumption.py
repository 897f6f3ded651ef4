"""OWASP API4:2023 Unrestricted Resource Consumption: every size a client controls is bounded."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory


def test_page_size_is_bounded(client: TestClient, factory: Factory) -> None:
    for scopes, path in [
        ("credit:check", "/v1/credit-checks"),
        ("admin:clients", "/v1/admin/clients"),
        ("audit:read", "/v1/audit/events"),
    ]:
        headers = factory.headers(scopes)
        assert client.get(f"{path}?limit=500", headers=headers).status_code == 200
        too_many = client.get(f"{path}?limit=501", headers=headers)
        assert too_many.status_code == 422, path
        assert client.get(f"{path}?limit=0", headers=headers).status_code == 422


def test_batch_size_is_bounded(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("credit:check", rate_plan="bulk")
    items = [{"uscc": "91440300708461136T"}] * 1001
    response = client.post(
        "/v1/credit-checks/batch", json={"purpose": "ONBOARDING", "items": items}, headers=headers
    )
    assert response.status_code == 422
    empty = client.post(
        "/v1/credit-checks/batch", json={"purpose": "ONBOARDING", "items": []}, headers=headers
    )
    assert empty.status_code == 422


def test_string_lengths_are_bounded(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("credit:check")
    long_reference = client.post(
        "/v1/credit-checks",
        json={"uscc": "91440300708461136T", "purpose": "ONBOARDING", "reference": "r" * 201},
        headers=headers,
    )
    assert long_reference.status_code == 422
    long_code = client.post(
        "/v1/credit-checks", json={"uscc": "9" * 10_000, "purpose": "ONBOARDING"}, headers=headers
    )
    # An unbounded field would still answer 422 here, as ``invalid-uscc`` (reason: length);
    # the schema's bound answers ``validation-failed`` on ``uscc`` before any parsing.
    assert long_code.status_code == 422
    problem = long_code.json()
    assert problem["type"].endswith("/problems/validation-failed"), long_code.text
    assert [error["field"] for error in problem["errors"]] == ["uscc"]
    assert "9" * 100 not in long_code.text
    admin = factory.headers("admin:clients")
    long_name = client.post(
        "/v1/admin/clients",
        json={"name": "n" * 201, "scopes": ["credit:check"], "purposes": []},
        headers=admin,
    )
    assert long_name.status_code == 422


def test_body_size_is_bounded(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("credit:check")
    response = client.post(
        "/v1/credit-checks",
        content=b'{"uscc": "' + b"9" * 2_000_000 + b'", "purpose": "ONBOARDING"}',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
