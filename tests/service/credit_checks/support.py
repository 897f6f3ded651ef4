"""Helpers shared by the credit-check, policy and usage tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.db.base import utcnow
from service.models import RatePlanRow
from service.policy.rules import CATEGORIES, SEVERITIES
from tests.fixtures.factories import Factory

_ALWAYS_RESTRICTED = {
    "DISHONEST_JUDGMENT_DEBTOR",
    "SERIOUS_ILLEGAL_DISHONEST",
    "MAJOR_TAX_VIOLATION",
}

ROOMY_PLAN = "test-roomy"
"""A plan no test can exhaust, for tests that make many checks."""


def ensure_plan(factory: Factory, name: str, *, rate: float, burst: int, quota: int) -> str:
    """Create the rate plan ``name`` unless it exists (the database is shared by tests)."""
    with factory.sessionmaker() as session, session.begin():
        if session.get(RatePlanRow, name) is None:
            session.add(
                RatePlanRow(
                    name=name,
                    requests_per_second=rate,
                    burst=burst,
                    daily_quota=quota,
                    updated_at=utcnow(),
                )
            )
    return name


def roomy(factory: Factory) -> str:
    return ensure_plan(factory, ROOMY_PLAN, rate=100_000.0, burst=100_000, quota=1_000_000_000)


def platform(
    factory: Factory, scopes: str = "credit:check", *, plan: str | None = None, **kwargs: Any
) -> dict[str, str]:
    """Bearer headers of a new platform client (on a roomy plan unless told)."""
    return factory.headers(scopes, rate_plan=plan or roomy(factory), **kwargs)


def check(
    client: TestClient,
    headers: dict[str, str],
    uscc: str,
    purpose: str = "ONBOARDING",
    **extra: Any,
) -> Any:
    return client.post(
        "/v1/credit-checks", json={"uscc": uscc, "purpose": purpose, **extra}, headers=headers
    )


def used_today(client: TestClient, headers: dict[str, str]) -> int:
    response = client.get("/v1/usage", headers=headers)
    assert response.status_code == 200, response.text
    return int(response.json()["used_today"])


def domain_default() -> dict[str, Any]:
    """DOMAIN.md's default policy, written out from its prose (independently of the seed)."""
    matrix: dict[str, dict[str, str]] = {}
    for category in CATEGORIES:
        matrix[category] = {}
        for severity in SEVERITIES:
            if category == "HONOR":
                verdict = "CLEAR"
            elif severity == "SERIOUS" or category in _ALWAYS_RESTRICTED:
                verdict = "RESTRICTED"
            else:
                verdict = "CAUTION"
            matrix[category][severity] = verdict
    return {
        "matrix": matrix,
        "registration_status": {
            "ACTIVE": None,
            "REVOKED": "RESTRICTED",
            "DEREGISTERED": "RESTRICTED",
        },
    }
