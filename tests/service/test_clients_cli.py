"""``creditshare clients create`` (CONTRACT.md's command line): the printed credentials
work, and a client registered without ``--purposes`` may state every purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from schemas.enums import Purpose
from service.cli import app
from service.models import AuditEvent
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


def _cli_events(db: Any, action: str, target_id: str) -> list[AuditEvent]:
    return list(
        db.scalars(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.target_id == target_id)
        )
    )


def test_clients_create_and_keys_rotate_leave_an_audit_event(
    settings: Settings, tmp_path: Path, db: Any
) -> None:
    """Administrative changes made on the command line are in the trail as the API's are:
    who (the operator), what, and the client or key concerned; never the secret."""
    creds = _create(settings, tmp_path, "credit:check", "--rate-plan", "bulk")
    (created,) = _cli_events(db, "client.create", creds["client_id"])
    assert (created.actor_kind, created.status, created.target_type) == ("operator", 201, "client")
    assert created.details["rate_plan"] == "bulk"
    assert creds["client_secret"] not in str(created.details)

    runner = cli(settings.effective_database_url, tmp_path / "data", "http://testserver")
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    kid = rotated.stdout.split()[3]
    (event,) = _cli_events(db, "keys.rotate", kid)
    assert (event.target_type, event.details["use"]) == ("signing_key", "token")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--scopes", "credit:bogus"], ["--scopes", "'credit:check'"]),
        (["--scopes", "credit:check", "--purposes", "NOPE"], ["--purposes", "'ONBOARDING'"]),
        (["--scopes", "credit:check", "--rate-plan", "gold"], ["rate plan", "standard"]),
        (["--scopes", "credit:check", "--platform-uscc", "91440300708461136A"], ["checksum"]),
    ],
)
def test_clients_create_says_what_is_wrong(
    settings: Settings, tmp_path: Path, options: list[str], says: list[str]
) -> None:
    runner = cli(settings.effective_database_url, tmp_path / "data", "http://testserver")
    result = runner.invoke(app, ["clients", "create", "--name", "x", *options])
    assert result.exit_code == 2
    for text in says:
        assert text in result.stderr
    assert result.stdout == ""
