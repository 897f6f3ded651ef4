"""``GET /v1/usage``: the plan, what is used and left today, when it resets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from schemas.usage import Usage
from service.usage.service import next_shanghai_midnight
from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import check, ensure_plan


def test_usage_reports_the_plan_and_counts_without_charging(
    client: TestClient, factory: Factory
) -> None:
    plan = ensure_plan(factory, "test-usage", rate=0.001, burst=4, quota=50)
    creds = factory.client("credit:check", rate_plan=plan)
    headers = {"Authorization": f"Bearer {factory.token(creds)}"}
    first = client.get("/v1/usage", headers=headers)
    assert first.status_code == 200
    usage = Usage.model_validate(first.json())
    assert usage.client_id == creds.client_id
    assert usage.rate_plan.model_dump() == {
        "name": plan, "requests_per_second": 0.001, "burst": 4, "daily_quota": 50,
    }  # fmt: skip
    assert (usage.used_today, usage.remaining_today, usage.burst_remaining) == (0, 50, 4)
    assert first.json()["resets_at"].endswith("T00:00:00+08:00")
    assert "ratelimit" in first.headers
    assert "retry-after" not in first.headers
    uscc = factory.merchant()
    check(client, headers, uscc)
    check(client, headers, uscc)
    for _ in range(2):  # reading usage charges nothing
        again = Usage.model_validate(client.get("/v1/usage", headers=headers).json())
        assert (again.used_today, again.remaining_today, again.burst_remaining) == (2, 48, 2)


def test_usage_needs_credit_check(client: TestClient, factory: Factory) -> None:
    assert client.get("/v1/usage").status_code == 401
    assert client.get("/v1/usage", headers=factory.headers("admin:data")).status_code == 403


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 29, 15, 59, 59, tzinfo=UTC), "2026-11-30T00:00:00+08:00"),
        (datetime(2026, 11, 29, 16, 0, 0, tzinfo=UTC), "2026-12-01T00:00:00+08:00"),
        (datetime(2026, 12, 31, 17, 0, 0, tzinfo=UTC), "2027-01-02T00:00:00+08:00"),
    ],
)
def test_next_shanghai_midnight(now: datetime, expected: str) -> None:
    assert next_shanghai_midnight(now).isoformat() == expected
