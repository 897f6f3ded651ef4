"""``creditshare clients create`` (CONTRACT.md's command line): the printed credentials
work, and a client registered without ``--purposes`` may state every purpose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from schemas.enums import Purpose
from service.cli import app
from service.settings import Settings
from tests.fixtures.cli import cli
from tests.fixtures.factories import Factory


def _create(settings: Settings, tmp_path: Path, *extra: str) -> dict[str, str]:
    runner = cli(settings.effective_database_url, tmp_path / "data", "http://testserver")
    result = runner.invoke(
        app, ["clients", "create", "--name", "cli-platform", "--scopes", *extra, "--json"]
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert set(created) == {"client_id", "client_secret"}
    return {str(k): str(v) for k, v in created.items()}


def _headers(client: TestClient, creds: dict[str, str]) -> dict[str, str]:
    token = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(creds["client_id"], creds["client_secret"]),
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def _check(client: TestClient, headers: dict[str, str], uscc: str, purpose: str) -> int:
    body = {"uscc": uscc, "purpose": purpose}
    return client.post("/v1/credit-checks", json=body, headers=headers).status_code


@pytest.mark.parametrize("purpose", [p.value for p in Purpose])
def test_without_purposes_a_checking_client_may_state_every_purpose(
    client: TestClient, factory: Factory, settings: Settings, tmp_path: Path, purpose: str
) -> None:
    creds = _create(settings, tmp_path, "credit:check credit:detail")
    assert _check(client, _headers(client, creds), factory.merchant(), purpose) == 201


def test_with_purposes_only_those(
    client: TestClient, factory: Factory, settings: Settings, tmp_path: Path
) -> None:
    creds = _create(settings, tmp_path, "credit:check", "--purposes", "ONBOARDING")
    headers = _headers(client, creds)
    uscc = factory.merchant()
    assert _check(client, headers, uscc, "ONBOARDING") == 201
    assert _check(client, headers, uscc, "DISPUTE_HANDLING") == 403


def test_the_admin_api_defaults_the_same_way(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients")
    made = client.post(
        "/v1/admin/clients",
        json={"name": "api-platform", "scopes": ["credit:check"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert sorted(made.json()["purposes"]) == sorted(p.value for p in Purpose)
    auditor = client.post(
        "/v1/admin/clients", json={"name": "api-auditor", "scopes": ["audit:read"]}, headers=admin
    )
    assert auditor.json()["purposes"] == []
    none = client.post(
        "/v1/admin/clients",
        json={"name": "api-none", "scopes": ["credit:check"], "purposes": []},
        headers=admin,
    )
    assert none.json()["purposes"] == []
