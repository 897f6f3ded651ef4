"""Rate plans are validated so that no stored plan can break the limiter (never a 500)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import ensure_plan


@pytest.mark.parametrize(
    "body",
    [
        {"requests_per_second": 5e-324, "burst": 1, "daily_quota": 1},
        {"requests_per_second": 0.001, "burst": 1_000_000, "daily_quota": 1},
        {"requests_per_second": True, "burst": 1, "daily_quota": 1},
        {"requests_per_second": 1, "burst": "5", "daily_quota": 1},
    ],
)
def test_unusable_plans_are_refused(
    client: TestClient, factory: Factory, body: dict[str, object]
) -> None:
    admin = factory.headers("admin:clients")
    response = client.put("/v1/admin/rate-plans/unusable", json=body, headers=admin)
    assert response.status_code == 422, response.text


def test_a_broken_stored_plan_is_a_503_not_a_500(client: TestClient, factory: Factory) -> None:
    # Stored directly: the admin API refuses this plan (see above).
    plan = ensure_plan(factory, "broken-plan", rate=5e-324, burst=1, quota=1)
    headers = factory.headers("credit:check", rate_plan=plan)
    response = client.post(
        "/v1/credit-checks",
        json={"uscc": factory.merchant(), "purpose": "ONBOARDING"},
        headers=headers,
    )
    assert response.status_code == 503
    assert response.json()["type"].endswith("/problems/service-unavailable")


def test_rate_plans_are_listed_a_page_at_a_time(client: TestClient, factory: Factory) -> None:
    """Like every list: ``{"items", "next_cursor"}``, ``?limit=`` and ``?cursor=``; in name
    order, each plan exactly once across the pages."""
    admin = factory.headers("admin:clients")
    for name in ("page-a", "page-b", "page-c"):
        body = {"requests_per_second": 5, "burst": 10, "daily_quota": 1000}
        assert client.put(f"/v1/admin/rate-plans/{name}", json=body, headers=admin).is_success
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/admin/rate-plans", params=params, headers=admin)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 2
        seen += [plan["name"] for plan in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))
    assert {"page-a", "page-b", "page-c"} <= set(seen)
    too_many = client.get("/v1/admin/rate-plans", params={"limit": 501}, headers=admin)
    assert too_many.status_code == 422
