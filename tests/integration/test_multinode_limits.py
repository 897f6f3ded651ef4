"""Several API processes sharing one PostgreSQL and one Redis admit exactly the quota,
whatever node each request lands on (the limiter's clock is Redis's, not the nodes')."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import httpx
import pytest

from service.settings import Settings
from tests.conftest import MASTER_KEY
from tests.fixtures.databases import using_postgres
from tests.fixtures.factories import Factory
from tests.fixtures.servers import live_server, server_env
from tests.service.credit_checks.support import ensure_plan

pytestmark = pytest.mark.skipif(
    not using_postgres(),
    reason="several API nodes need PostgreSQL and Redis (set CREDITSHARE_TEST_*)",
)


@pytest.fixture(scope="module")
def nodes(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    if not settings.redis_url:
        pytest.skip("needs CREDITSHARE_TEST_REDIS_URL")
    with ExitStack() as stack:
        bases = []
        for index in range(2):
            env = server_env(
                settings.effective_database_url,
                settings.redis_url,
                tmp_path_factory.mktemp(f"node{index}"),
                MASTER_KEY,
                public_url=settings.public_url,
            )
            env["CREDITSHARE_RATELIMIT_NODES"] = "2"
            bases.append(stack.enter_context(live_server(env)))
        yield bases


def _hammer(
    nodes: list[str], headers: dict[str, str], body: dict[str, str], count: int
) -> Counter[int]:
    def one(index: int) -> int:
        response = httpx.post(
            f"{nodes[index % len(nodes)]}/v1/credit-checks", json=body, headers=headers, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        return Counter(pool.map(one, range(count)))


def test_daily_quota_is_exact_across_nodes(nodes: list[str], factory: Factory) -> None:
    plan = ensure_plan(factory, "tiny-quota", rate=10_000, burst=10_000, quota=25)
    headers = factory.headers("credit:check", rate_plan=plan)
    body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}
    statuses = _hammer(nodes, headers, body, 80)
    assert statuses[201] == 25, statuses
    assert statuses[429] == 55, statuses
    refused = httpx.post(f"{nodes[0]}/v1/credit-checks", json=body, headers=headers)
    assert refused.json()["type"].endswith("/problems/quota-exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    usage = httpx.get(f"{nodes[1]}/v1/usage", headers=headers).json()
    assert usage["remaining_today"] == 0


def test_burst_is_exact_across_nodes(nodes: list[str], factory: Factory) -> None:
    plan = ensure_plan(factory, "tiny-burst", rate=0.01, burst=12, quota=100_000)
    headers = factory.headers("credit:check", rate_plan=plan)
    body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}
    statuses = _hammer(nodes, headers, body, 40)
    assert statuses[201] == 12, statuses
    assert statuses[429] == 28, statuses
    refused = httpx.post(f"{nodes[1]}/v1/credit-checks", json=body, headers=headers)
    assert refused.json()["type"].endswith("/problems/rate-limited")
    assert "ratelimit" in {k.lower() for k in refused.headers}
