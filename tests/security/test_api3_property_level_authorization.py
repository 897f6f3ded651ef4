"""OWASP API3:2023 Broken Object Property Level Authorization: no mass assignment,
no excessive data exposure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory, random_uscc, record_body
from tests.service.credit_checks.support import domain_default

UnknownFieldCase = tuple[str, str, str, Callable[[Factory], dict[str, Any]], set[str]]

# Each body is valid for its operation except for the unknown (often privileged) fields, so
# the only acceptable refusal names exactly those fields.
CASES: list[UnknownFieldCase] = [
    (
        "POST",
        "/v1/credit-checks",
        "credit:check",
        lambda f: {"uscc": "91440300708461136T", "purpose": "ONBOARDING", "verdict": "CLEAR"},
        {"verdict"},
    ),
    (
        "POST",
        "/v1/credit-checks/batch",
        "credit:check",
        lambda f: {
            "purpose": "ONBOARDING",
            "items": [{"uscc": "91440300708461136T", "client_id": "x"}],
        },
        {"items[0].client_id"},
    ),
    (
        "POST",
        "/v1/admin/clients",
        "admin:clients",
        lambda f: {
            "name": "x",
            "scopes": ["credit:check"],
            "purposes": [],
            "client_secret": "mine",
        },
        {"client_secret"},
    ),
    (
        "PATCH",
        "/v1/admin/clients/cs_nonexistent",
        "admin:clients",
        lambda f: {"name": "renamed", "client_id": "cs_other"},
        {"client_id"},
    ),
    (
        "PATCH",
        "/v1/admin/clients/cs_nonexistent",
        "admin:clients",
        lambda f: {"status": "active", "secret_hash": "sha256$00"},
        {"secret_hash"},
    ),
    (
        "PUT",
        "/v1/admin/rate-plans/mass",
        "admin:clients",
        lambda f: {"requests_per_second": 1.0, "burst": 1, "daily_quota": 1, "owner": "x"},
        {"owner"},
    ),
    (
        "POST",
        "/v1/admin/records",
        "admin:data",
        lambda f: {**record_body(f.merchant()), "id": "rec_mine", "version": 99},
        {"id", "version"},
    ),
    (
        "POST",
        "/v1/audit/verify",
        "audit:read",
        lambda f: {"from_seq": 1, "ok": True},
        {"ok"},
    ),
    (
        "PUT",
        "/v1/admin/policy",
        "admin:data",
        # version (a precondition) and the read-only created_at/created_by are accepted, so
        # that GET's document can be sent back; the latter are ignored, never stored
        # (tests/service/policy/test_policy_api.py).
        lambda f: {**domain_default(), "approved_by": "migration", "effective_from": "2001-01-01"},
        {"approved_by", "effective_from"},
    ),
]


@pytest.mark.parametrize(("method", "path", "scopes", "body", "unknown"), CASES)
def test_unknown_fields_are_refused(
    client: TestClient,
    factory: Factory,
    method: str,
    path: str,
    scopes: str,
    body: Callable[[Factory], dict[str, Any]],
    unknown: set[str],
) -> None:
    headers = factory.headers(scopes)
    response = client.request(method, path, json=body(factory), headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/problems/validation-failed")
    assert {error["field"] for error in problem["errors"]} == unknown, response.text


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


@pytest.mark.parametrize("member", ["name", "scopes", "purposes", "rate_plan", "jwks", "status"])
def test_a_client_update_refuses_null_rather_than_ignoring_it(
    client: TestClient, factory: Factory, member: str
) -> None:
    target = factory.client("credit:check")
    admin = factory.headers("admin:clients")
    path = f"/v1/admin/clients/{target.client_id}"
    before = client.get(path, headers=admin).json()
    response = client.patch(path, json={member: None}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/problems/validation-failed")
    after = client.get(path, headers=admin).json()
    assert after == before
