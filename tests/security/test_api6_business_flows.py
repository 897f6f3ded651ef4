"""OWASP API6:2023 Unrestricted Access to Sensitive Business Flows: bulk checking is bounded
by each client's plan (burst and daily quota), and a refused check costs the quota nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import ensure_plan


def test_daily_quota_stops_harvesting(client: TestClient, factory: Factory) -> None:
    plan = ensure_plan(factory, "harvest-guard", rate=1000.0, burst=1000, quota=5)
    headers = factory.headers("credit:check", rate_plan=plan)
    codes = [factory.merchant() for _ in range(3)]
    batch = client.post(
        "/v1/credit-checks/batch",
        json={"purpose": "ONBOARDING", "items": [{"uscc": c} for c in codes]},
        headers=headers,
    )
    assert batch.status_code == 200
    too_many = client.post(
        "/v1/credit-checks/batch",
        json={"purpose": "ONBOARDING", "items": [{"uscc": c} for c in codes]},
        headers=headers,
    )
    assert too_many.status_code == 429
    assert too_many.json()["type"].endswith("/problems/quota-exceeded")
    assert int(too_many.headers["retry-after"]) >= 1
    usage = client.get("/v1/usage", headers=headers).json()
    assert usage["remaining_today"] == 2
