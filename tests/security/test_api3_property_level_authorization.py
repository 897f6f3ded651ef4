"""OWASP API3:2023 Broken Object Property Level Authorization: no mass assignment,
no excessive data exposure."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory, random_uscc


@pytest.mark.parametrize(
    ("method", "path", "scopes", "body"),
    [
        (
            "POST",
            "/v1/credit-checks",
            "credit:check",
            {"uscc": "91440300708461136T", "purpose": "ONBOARDING", "verdict": "CLEAR"},
        ),
        (
            "POST",
            "/v1/credit-checks/batch",
            "credit:check",
            {"purpose": "ONBOARDING", "items": [{"uscc": "91440300708461136T", "client_id": "x"}]},
        ),
        (
            "POST",
            "/v1/admin/clients",
            "admin:clients",
            {"name": "x", "scopes": ["credit:check"], "purposes": [], "client_secret": "mine"},
        ),
        ("PATCH", "/v1/admin/clients/cs_nonexistent", "admin:clients", {"client_id": "cs_other"}),
        (
            "PATCH",
            "/v1/admin/clients/cs_nonexistent",
            "admin:clients",
            {"secret_hash": "sha256$00"},
        ),
        (
            "PUT",
            "/v1/admin/rate-plans/mass",
            "admin:clients",
            {"requests_per_second": 1, "burst": 1, "daily_quota": 1, "owner": "x"},
        ),
        (
            "POST",
            "/v1/admin/records",
            "admin:data",
            {"uscc": "91440300708461136T", "id": "rec_mine", "version": 99},
        ),
        ("POST", "/v1/audit/verify", "audit:read", {"from_seq": 1, "ok": True}),
        (
            "PUT",
            "/v1/admin/policy",
            "admin:data",
            {"version": 99, "matrix": {}, "registration_status": {}},
        ),
    ],
)
def test_unknown_fields_are_refused(
    client: TestClient,
    factory: Factory,
    method: str,
    path: str,
    scopes: str,
    body: dict[str, object] | None,
) -> None:
    headers = factory.headers(scopes)
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_client_views_never_expose_secret_material(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    created = client.post(
        "/v1/admin/clients",
        json={"name": "exposure", "scopes": ["credit:check"], "purposes": ["ONBOARDING"]},
        headers=admin,
    ).json()
    secret = created["client_secret"]
    listed = client.get("/v1/admin/clients?limit=500", headers=admin).text
    fetched = client.get(f"/v1/admin/clients/{created['client_id']}", headers=admin).text
    for text in (listed, fetched):
        assert secret not in text
        assert "secret_hash" not in text
        assert "sha256$" not in text


def test_personal_data_masked_without_pii_scope(client: TestClient, factory: Factory) -> None:
    uscc = factory.merchant(random_uscc("92"), name="河西区王记餐馆", legal_representative="王小明")
    headers = factory.headers("credit:check credit:detail")
    body = client.post(
        "/v1/credit-checks",
        json={"uscc": uscc, "purpose": "ONBOARDING", "consent_ref": "C-1"},
        headers=headers,
    )
    assert body.status_code == 201
    assert body.json()["merchant"]["legal_representative"] == "王**"
    assert "王小明" not in body.text
