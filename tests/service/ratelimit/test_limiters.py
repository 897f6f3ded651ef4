"""Behaviour both backends share, run against the in-process limiter and a real Redis."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from redis.backoff import NoBackoff
from redis.retry import Retry

from service.ratelimit import (
    CostExceedsPlan,
    Decision,
    InProcessLimiter,
    Limiter,
    RatePlan,
    RedisLimiter,
)

REDIS_URL = os.environ.get("CREDITSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NO_RETRY = Retry(NoBackoff(), 0)  # an unreachable Redis is skipped at once
SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2025-06-15 23:59:00 in Shanghai: 60 s before the quota day ends.
FAKE_START = datetime(2025, 6, 15, 23, 59, tzinfo=SHANGHAI).timestamp()


class FakeClock:
    """Unix time in seconds that only moves when told to."""

    def __init__(self, start: float = FAKE_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    name: str
    limiter: Limiter
    clock: FakeClock | None
    keys: list[str] = field(default_factory=list)

    def key(self) -> str:
        k = f"test:{uuid.uuid4().hex}"
        self.keys.append(k)
        return k

    def advance(self, seconds: float) -> None:
        """Let time pass: instantly on the fake clock, really (briefly) on Redis."""
        if self.clock is not None:
            self.clock.advance(seconds)
        else:
            assert seconds <= 0.2, "keep Redis tests fast"
            time.sleep(seconds)

    def seconds_to_shanghai_midnight(self) -> float:
        now = self.clock() if self.clock is not None else time.time()
        local = datetime.fromtimestamp(now, SHANGHAI)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
        return midnight.timestamp() - now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        clock = FakeClock()
        b = Backend("memory", InProcessLimiter(clock=clock), clock)
    else:
        client = request.getfixturevalue("redis_client")
        b = Backend("redis", RedisLimiter(client), None)
    yield b
    for k in b.keys:  # flush only what this test created
        b.limiter.reset(k)
    b.limiter.close()


def test_exactly_burst_immediate_admits_then_refusal(backend: Backend) -> None:
    plan = RatePlan("p", requests_per_second=1, burst=5, daily_quota=1000)
    key = backend.key()
    remaining = [backend.limiter.acquire(key, plan).limit_remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    refused = backend.limiter.acquire(key, plan)
    assert not refused.allowed
    assert refused.reason == "rate"
    assert refused.limit_remaining == 0
    assert 0.9 < refused.retry_after <= 1.0
    assert 4.9 < refused.reset_after <= 5.0
    assert refused.quota_remaining == 995


def test_fresh_key_after_refusal_is_independent(backend: Backend) -> None:
    plan = RatePlan("p", requests_per_second=1, burst=1, daily_quota=10)
    a, b = backend.key(), backend.key()
    assert backend.limiter.acquire(a, plan).allowed
    assert not backend.limiter.acquire(a, plan).allowed
    assert backend.limiter.acquire(b, plan).allowed


def test_sustained_rate_refills(backend: Backend) -> None:
    plan = RatePlan("fast", requests_per_second=50, burst=1, daily_quota=1000)
    key = backend.key()
    assert backend.limiter.acquire(key, plan).allowed
    refused = backend.limiter.acquire(key, plan)
    assert not refused.allowed
    assert refused.reason == "rate"
    assert 0 < refused.retry_after <= 0.02
    backend.advance(refused.retry_after + (0.003 if backend.clock is None else 0))
    again = backend.limiter.acquire(key, plan)
    assert again.allowed, again
    assert not backend.limiter.acquire(key, plan).allowed


def test_quota_exhaustion_reports_quota_and_shanghai_midnight(backend: Backend) -> None:
    plan = RatePlan(
        "q", requests_per_second=1, burst=10, daily_quota=3
    )  # no refill during the test
    key = backend.key()
    left = [backend.limiter.acquire(key, plan).quota_remaining for _ in range(3)]
    assert left == [2, 1, 0]
    expected = backend.seconds_to_shanghai_midnight()
    refused = backend.limiter.acquire(key, plan)
    assert not refused.allowed
    assert refused.reason == "quota"
    assert refused.quota_limit == 3
    assert refused.quota_remaining == 0
    if backend.clock is not None:
        assert refused.quota_reset_after == 60
        assert refused.retry_after == 60.0
    else:
        assert abs(refused.quota_reset_after - expected) <= 2
        assert abs(refused.retry_after - expected) <= 2
    # The quota refusal charged nothing to the burst bucket: 3 used, 7 left.
    assert backend.limiter.peek(key, plan).limit_remaining >= 7
    assert backend.limiter.peek(key, plan).limit_remaining <= 8


def test_cost_all_or_nothing_when_burst_refuses(backend: Backend) -> None:
    plan = RatePlan("c", requests_per_second=0.1, burst=5, daily_quota=100)
    key = backend.key()
    first = backend.limiter.acquire(key, plan, cost=3)
    assert (first.allowed, first.limit_remaining, first.quota_remaining) == (True, 2, 97)
    refused = backend.limiter.acquire(key, plan, cost=3)
    assert (refused.allowed, refused.reason) == (False, "rate")
    assert (refused.limit_remaining, refused.quota_remaining) == (2, 97)
    last = backend.limiter.acquire(key, plan, cost=2)
    assert (last.allowed, last.limit_remaining, last.quota_remaining) == (True, 0, 95)


def test_cost_all_or_nothing_when_quota_refuses(backend: Backend) -> None:
    plan = RatePlan("c", requests_per_second=0.1, burst=10, daily_quota=4)
    key = backend.key()
    first = backend.limiter.acquire(key, plan, cost=3)
    assert (first.allowed, first.limit_remaining, first.quota_remaining) == (True, 7, 1)
    refused = backend.limiter.acquire(key, plan, cost=2)
    assert (refused.allowed, refused.reason) == (False, "quota")
    assert (refused.limit_remaining, refused.quota_remaining) == (7, 1)
    last = backend.limiter.acquire(key, plan, cost=1)
    assert (last.allowed, last.limit_remaining, last.quota_remaining) == (True, 6, 0)


def test_quota_reason_wins_when_both_refuse(backend: Backend) -> None:
    plan = RatePlan("b", requests_per_second=0.1, burst=2, daily_quota=2)
    key = backend.key()
    assert backend.limiter.acquire(key, plan, cost=2).allowed
    refused = backend.limiter.acquire(key, plan)
    assert refused.reason == "quota"
    assert refused.retry_after >= 10  # at least the burst wait (one interval = 10 s)


def test_invalid_costs_raise_and_charge_nothing(backend: Backend) -> None:
    plan = RatePlan("v", requests_per_second=1, burst=3, daily_quota=10)
    key = backend.key()
    with pytest.raises(CostExceedsPlan):
        backend.limiter.acquire(key, plan, cost=4)
    with pytest.raises(ValueError, match="cost"):
        backend.limiter.acquire(key, plan, cost=0)
    state = backend.limiter.peek(key, plan)
    assert (state.limit_remaining, state.quota_remaining) == (3, 10)


def test_peek_consumes_nothing(backend: Backend) -> None:
    plan = RatePlan("k", requests_per_second=0.1, burst=4, daily_quota=50)
    key = backend.key()
    fresh = backend.limiter.peek(key, plan)
    assert fresh == Decision(
        allowed=True,
        reason="ok",
        limit_remaining=4,
        reset_after=0.0,
        retry_after=0.0,
        quota_limit=50,
        quota_remaining=50,
        quota_reset_after=fresh.quota_reset_after,
    )
    backend.limiter.acquire(key, plan, cost=2)
    seen = [backend.limiter.peek(key, plan) for _ in range(3)]
    assert {(d.limit_remaining, d.quota_remaining) for d in seen} == {(2, 48)}
    assert all(d.allowed for d in seen)
    backend.limiter.acquire(key, plan, cost=2)
    empty = backend.limiter.peek(key, plan)
    assert (empty.allowed, empty.reason, empty.limit_remaining) == (False, "rate", 0)
    assert 9 < empty.retry_after <= 10


def test_reset_restores_burst_and_quota(backend: Backend) -> None:
    plan = RatePlan("r", requests_per_second=0.1, burst=2, daily_quota=2)
    key = backend.key()
    backend.limiter.acquire(key, plan, cost=2)
    assert not backend.limiter.acquire(key, plan).allowed
    backend.limiter.reset(key)
    again = backend.limiter.acquire(key, plan)
    assert (again.allowed, again.limit_remaining, again.quota_remaining) == (True, 1, 1)


def _hammer(limiter: Limiter, key: str, plan: RatePlan, threads: int, each: int) -> list[Decision]:
    results: list[Decision] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        mine = [limiter.acquire(key, plan) for _ in range(each)]
        with lock:
            results.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results


def test_concurrent_acquires_admit_exactly_the_quota(backend: Backend) -> None:
    plan = RatePlan("conc", requests_per_second=100_000, burst=1000, daily_quota=100)
    key = backend.key()
    results = _hammer(backend.limiter, key, plan, threads=8, each=50)
    assert len(results) == 400
    assert sum(d.allowed for d in results) == 100
    assert {d.reason for d in results if not d.allowed} == {"quota"}
    assert sorted(d.quota_remaining for d in results if d.allowed) == list(range(100))


def test_concurrent_acquires_admit_exactly_the_burst(backend: Backend) -> None:
    plan = RatePlan("conc", requests_per_second=0.01, burst=100, daily_quota=100_000)
    key = backend.key()
    results = _hammer(backend.limiter, key, plan, threads=8, each=50)
    assert sum(d.allowed for d in results) == 100
    assert {d.reason for d in results if not d.allowed} == {"rate"}


def test_non_integral_interval_admits_exactly_burst(backend: Backend) -> None:
    # 3 rps: T = 333333 us, not a whole number of anything; the burst must still be exact.
    plan = RatePlan("odd", requests_per_second=3, burst=7, daily_quota=1000)
    key = backend.key()
    decisions = [backend.limiter.acquire(key, plan) for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 7 + [False]


def test_acquire_many_decides_as_acquire_one_by_one(backend: Backend) -> None:
    """Several clients and plans in one call, keys repeating: each charge is decided as
    ``acquire`` would decide it in that order (a refusal charging nothing), on a twin set
    of keys charged one at a time."""
    slow = RatePlan("slow", requests_per_second=0.01, burst=2, daily_quota=1_000)
    scarce = RatePlan("scarce", requests_per_second=0.01, burst=10, daily_quota=3)
    keys = [backend.key() for _ in range(3)]
    twins = [backend.key() for _ in range(3)]
    order = [(0, slow), (1, scarce), (0, slow), (2, slow), (0, slow), (1, scarce)]
    order += [(1, scarce), (1, scarce), (2, slow), (2, slow)]

    together = backend.limiter.acquire_many([(keys[i], plan, 1) for i, plan in order])
    alone = [backend.limiter.acquire(twins[i], plan) for i, plan in order]

    def essentials(d: Decision) -> tuple[object, ...]:
        return (d.allowed, d.reason, d.limit_remaining, d.quota_remaining)

    assert [essentials(d) for d in together] == [essentials(d) for d in alone]
    assert [d.allowed for d in together] == [
        True,
        True,
        True,
        True,
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    assert [d.reason for d in together if not d.allowed] == ["rate", "quota", "rate"]
