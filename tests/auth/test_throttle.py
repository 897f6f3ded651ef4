"""Brute-force brakes on the token endpoint: per client id and per source address,
short enough that an attacker cannot lock a legitimate client out for long."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from auth.throttle import FAILURE_CAP_FACTOR
from service.app import create_app
from service.models import AuditEvent
from service.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.factories import Factory

GRANT = {"grant_type": "client_credentials"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_failed_attempts_per_client_id_are_braked(client: TestClient, factory: Factory) -> None:
    creds = factory.client()
    statuses = [
        client.post(
            "/oauth/token", data=GRANT, headers=_basic(creds.client_id, f"wrong{i}")
        ).status_code
        for i in range(10)
    ]
    assert statuses == [401] * 10
    braked = client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert braked.status_code == 429
    assert braked.json()["error"] == "invalid_request"
    # One failure budget unit comes back per second: the owner waits seconds, not minutes.
    assert 1 <= int(braked.headers["retry-after"]) <= 2
    other = factory.client()
    assert client.post("/oauth/token", data=GRANT, headers=other.basic()).status_code == 200


@pytest.fixture
def strict_client(settings: Settings, tmp_path: Path) -> Iterator[TestClient]:
    strict = make_settings(
        settings.effective_database_url,
        None,
        tmp_path,
        token_failures_burst_per_address=5,
    )
    with TestClient(create_app(strict), raise_server_exceptions=False) as test_client:
        yield test_client


def test_failed_attempts_per_address_are_braked(
    strict_client: TestClient, factory: Factory
) -> None:
    for i in range(5):
        response = strict_client.post(
            "/oauth/token", data=GRANT, headers=_basic(f"cs_unknown{i}", "x")
        )
        assert response.status_code == 401
    # The address has spent its failure budget: its next failure is refused (429) ...
    braked = strict_client.post("/oauth/token", data=GRANT, headers=_basic("cs_unknown9", "x"))
    assert braked.status_code == 429
    assert braked.json()["error"] == "invalid_request"
    assert int(braked.headers["retry-after"]) >= 1
    assert '"burst";r=0;' in braked.headers["ratelimit"]
    creds = factory.client()
    wrong = strict_client.post("/oauth/token", data=GRANT, headers=_basic(creds.client_id, "x"))
    assert wrong.status_code == 429
    # ... but a client behind the same address that authenticates still gets its token:
    # one platform's wrong secret must not lock out the others sharing its egress address.
    granted = strict_client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert granted.status_code == 200, granted.text
    assert "access_token" in granted.json()
    # Past ten times the budget, the address is refused before anything is verified.
    for i in range(10, 10 + 5 * FAILURE_CAP_FACTOR * 2):  # beyond what refills meanwhile
        strict_client.post("/oauth/token", data=GRANT, headers=_basic(f"cs_unknown{i}", "x"))
    capped = strict_client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert capped.status_code == 429
    assert int(capped.headers["retry-after"]) >= 1


def test_a_braked_failure_is_still_an_invalid_client_in_the_trail(
    strict_client: TestClient, factory: Factory
) -> None:
    for i in range(6):
        strict_client.post("/oauth/token", data=GRANT, headers=_basic(f"cs_nobody{i}", "x"))
    braked = strict_client.post("/oauth/token", data=GRANT, headers=_basic("cs_nobody9", "x"))
    assert braked.status_code == 429
    sessions = strict_client.app.state.sessionmaker  # type: ignore[attr-defined]
    with sessions() as session:
        details = session.scalars(
            select(AuditEvent.details).where(
                AuditEvent.request_id == braked.headers["x-request-id"]
            )
        ).one()
    assert details["error"] == "invalid_client"
    assert details["throttled"] is True


def test_token_endpoint_answers_carry_ratelimit_fields(
    client: TestClient, factory: Factory
) -> None:
    """The token endpoint is rate limited, so its answers carry ``RateLimit-Policy`` and
    ``RateLimit`` like every limited endpoint: on success, and on a refusal with
    ``Retry-After`` (here the client id's failure budget, ten units)."""
    creds = factory.client()
    granted = client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert granted.status_code == 200
    assert '"burst";q=' in granted.headers["ratelimit-policy"]
    assert '"burst";r=' in granted.headers["ratelimit"]
    for i in range(10):
        client.post("/oauth/token", data=GRANT, headers=_basic(creds.client_id, f"wrong{i}"))
    braked = client.post("/oauth/token", data=GRANT, headers=creds.basic())
    assert braked.status_code == 429
    assert braked.headers["ratelimit-policy"] == '"burst";q=10;w=10, "daily";q=10000000;w=86400'
    assert '"burst";r=0;' in braked.headers["ratelimit"]
    assert int(braked.headers["retry-after"]) >= 1
