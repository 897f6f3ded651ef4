"""FallbackLimiter: per-node limits while Redis is down, fail-closed quota, cool-down."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.ratelimit import (
    CostExceedsPlan,
    Decision,
    FallbackLimiter,
    InProcessLimiter,
    LimiterUnavailable,
    RatePlan,
    RedisLimiter,
)
from service.ratelimit.base import Charge

REDIS_URL = os.environ.get("CREDITSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NO_RETRY = Retry(NoBackoff(), 0)  # an unreachable Redis is skipped at once
START = datetime(2025, 6, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
PLAN = RatePlan("std", requests_per_second=4, burst=8, daily_quota=40)


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FlakyPrimary:
    """A primary that fails until told otherwise, counting the calls that reach it."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.inner = InProcessLimiter()

    def acquire(self, key: str, plan: RatePlan, cost: int = 1) -> Decision:
        self.calls += 1
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.acquire(key, plan, cost)

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        self.calls += 1
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.acquire_many(charges)

    def peek(self, key: str, plan: RatePlan) -> Decision:
        self.calls += 1
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.peek(key, plan)

    def reset(self, key: str) -> None:
        self.inner.reset(key)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def dead_redis() -> Iterator[RedisLimiter]:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0")
    yield limiter
    limiter.close()


def test_unreachable_redis_serves_this_nodes_share(dead_redis: RedisLimiter) -> None:
    clock = FakeClock(START)
    events: list[None] = []
    limiter = FallbackLimiter(
        dead_redis,
        InProcessLimiter(clock=clock),
        nodes=4,
        quota_fail_closed=False,
        on_fallback=lambda: events.append(None),
    )
    # This node's share: rate 1/s, burst 2, quota 10.
    first = [limiter.acquire("k", PLAN) for _ in range(3)]
    assert [d.allowed for d in first] == [True, True, False]
    assert first[1].limit_remaining == 0
    assert first[2].reason == "rate"
    assert first[2].retry_after == 1.0
    assert limiter.degraded
    admitted = 2
    for _ in range(20):
        clock.advance(1)
        admitted += limiter.acquire("k", PLAN).allowed
    assert admitted == 10
    refused = limiter.acquire("k", PLAN)
    assert (refused.reason, refused.quota_limit, refused.quota_remaining) == ("quota", 10, 0)
    assert limiter.fallback_count == len(events) == 24


def test_quota_fail_closed_raises(dead_redis: RedisLimiter) -> None:
    events: list[None] = []
    limiter = FallbackLimiter(
        dead_redis,
        InProcessLimiter(),
        nodes=2,
        quota_fail_closed=True,
        on_fallback=lambda: events.append(None),
    )
    with pytest.raises(LimiterUnavailable):
        limiter.acquire("k", PLAN)
    with pytest.raises(LimiterUnavailable):
        limiter.peek("k", PLAN)
    assert limiter.fallback_count == len(events) == 2


def test_primary_is_not_retried_during_the_cooldown_then_probed_once() -> None:
    primary = FlakyPrimary()
    mono = FakeClock(100.0)
    limiter = FallbackLimiter(
        primary, InProcessLimiter(), nodes=1, quota_fail_closed=False, cooldown=1.0, monotonic=mono
    )
    big = RatePlan("big", requests_per_second=1000, burst=1000, daily_quota=10_000)
    for _ in range(5):
        assert limiter.acquire("k", big).allowed
    assert primary.calls == 1
    mono.advance(0.5)
    limiter.acquire("k", big)
    assert primary.calls == 1
    mono.advance(0.5)
    for _ in range(5):
        limiter.acquire("k", big)
    assert primary.calls == 2  # one probe, still down, the rest stayed local
    assert limiter.fallback_count == 11
    primary.down = False
    mono.advance(1.0)
    limiter.acquire("k", big)
    assert not limiter.degraded
    for _ in range(5):
        limiter.acquire("k", big)
    assert primary.calls == 8
    assert limiter.fallback_count == 11


def test_cost_above_the_local_share_is_refused_not_raised() -> None:
    limiter = FallbackLimiter(FlakyPrimary(), InProcessLimiter(), nodes=4, quota_fail_closed=False)
    decision = limiter.acquire("k", PLAN, cost=5)  # fits burst 8, not this node's 2
    assert (decision.allowed, decision.reason) == (False, "rate")
    assert decision.retry_after >= 1.0
    assert limiter.acquire("k", PLAN, cost=2).allowed  # nothing was charged
    with pytest.raises(CostExceedsPlan):
        limiter.acquire("k", PLAN, cost=9)


def test_local_plan_shares() -> None:
    limiter = FallbackLimiter(FlakyPrimary(), InProcessLimiter(), nodes=3, quota_fail_closed=False)
    share = limiter.local_plan(RatePlan("p", requests_per_second=3, burst=2, daily_quota=5))
    assert (share.requests_per_second, share.burst, share.daily_quota) == (1, 1, 1)
    none = limiter.local_plan(RatePlan("z", requests_per_second=3, burst=9, daily_quota=0))
    assert (none.burst, none.daily_quota) == (3, 0)
    with pytest.raises(ValueError, match="nodes"):
        FallbackLimiter(FlakyPrimary(), InProcessLimiter(), nodes=0, quota_fail_closed=False)


def test_healthy_redis_is_used_and_nothing_counted() -> None:
    client = redis.Redis.from_url(
        REDIS_URL, socket_timeout=2, socket_connect_timeout=1, retry=NO_RETRY
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    key = f"test:{uuid.uuid4().hex}"
    local = InProcessLimiter()
    limiter = FallbackLimiter(
        RedisLimiter(client, close_client=True), local, nodes=4, quota_fail_closed=True
    )
    try:
        decisions = [limiter.acquire(key, PLAN) for _ in range(9)]
        # The full plan (burst 8), not a node's share, and nothing kept locally.
        assert [d.allowed for d in decisions] == [True] * 8 + [False]
        assert limiter.peek(key, PLAN).quota_remaining == 32
        assert limiter.fallback_count == 0
        assert len(local) == 0
    finally:
        limiter.reset(key)
        limiter.close()


def test_acquire_many_falls_back_to_the_local_share_and_back() -> None:
    primary = FlakyPrimary()
    clock = FakeClock(START)
    ticks = FakeClock(0.0)
    plan = RatePlan("p", requests_per_second=10, burst=4, daily_quota=100)
    limiter = FallbackLimiter(
        primary,
        InProcessLimiter(clock=clock),
        nodes=2,
        quota_fail_closed=False,
        cooldown=1.0,
        monotonic=ticks,
    )
    # Down: this node admits its share of the burst (4 / 2 nodes), charge by charge.
    local = limiter.acquire_many([("k", plan, 1)] * 3)
    assert [d.allowed for d in local] == [True, True, False]
    assert limiter.degraded
    primary.down = False
    ticks.advance(2.0)  # past the cool-down: the shared limiter is tried again
    shared = limiter.acquire_many([("k", plan, 1)] * 2)
    assert [d.allowed for d in shared] == [True, True]
    assert not limiter.degraded
    assert primary.inner.peek("k", plan).quota_remaining == 98


def test_acquire_many_of_nothing_asks_nobody() -> None:
    primary = FlakyPrimary()
    primary.down = False
    limiter = FallbackLimiter(
        primary, InProcessLimiter(), nodes=2, quota_fail_closed=False, cooldown=1.0
    )
    assert limiter.acquire_many([]) == []
    assert primary.calls == 0
