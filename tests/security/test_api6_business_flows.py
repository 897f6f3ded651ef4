"""OWASP API6:2023 Unrestricted Access to Sensitive Business Flows: bulk checking is bounded
by each client's plan (burst and daily quota), and a refused check costs the quota nothing."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.db.base import utcnow
from service.models import RatePlanRow
from tests.fixtures.factories import Factory


def test_daily_quota_stops_harvesting(client: TestClient, factory: Factory) -> None:
    with factory.sessionmaker() as session, session.begin():
        session.merge(
            RatePlanRow(
                name="harvest-guard",
                requests_per_second=1000,
                burst=1000,
                daily_quota=5,
                updated_at=utcnow(),
            )
        )
    headers = factory.headers("credit:check", rate_plan="harvest-guard")
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
