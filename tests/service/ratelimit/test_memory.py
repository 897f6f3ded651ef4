"""In-process limiter: what needs a controlled clock (refill, day rollover, eviction)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from service.ratelimit import InProcessLimiter, RatePlan

SHANGHAI = ZoneInfo("Asia/Shanghai")


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def shanghai(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI).timestamp()


def test_sustained_rate_over_simulated_time() -> None:
    start = shanghai(2025, 3, 1, 12, 0)
    clock = FakeClock(start)
    limiter = InProcessLimiter(clock=clock)
    plan = RatePlan("s", requests_per_second=2, burst=3, daily_quota=10_000)
    admitted_at: list[int] = []
    for tick in range(101):  # every 0.1 s for 10 s, as many as are admitted
        clock.now = start + tick / 10  # not += 0.1: that drifts by microseconds
        while limiter.acquire("k", plan).allowed:
            admitted_at.append(tick)
    # 3 at once, then one every 0.5 s: at 0.5, 1.0, ..., 10.0.
    assert admitted_at == [0, 0, 0, *range(5, 101, 5)]


def test_burst_is_restored_after_the_full_window() -> None:
    clock = FakeClock(shanghai(2025, 3, 1, 12, 0))
    limiter = InProcessLimiter(clock=clock)
    plan = RatePlan("s", requests_per_second=4, burst=8, daily_quota=10_000)
    last = limiter.acquire("k", plan, cost=8)
    assert (last.limit_remaining, last.reset_after) == (0, 2.0)
    clock.advance(1.999999)
    assert limiter.peek("k", plan).limit_remaining == 7
    clock.advance(0.000001)
    assert limiter.peek("k", plan).limit_remaining == 8
    assert limiter.acquire("k", plan, cost=8).allowed


def test_retry_after_is_exact() -> None:
    clock = FakeClock(shanghai(2025, 3, 1, 12, 0))
    limiter = InProcessLimiter(clock=clock)
    plan = RatePlan("s", requests_per_second=10, burst=2, daily_quota=100)
    limiter.acquire("k", plan, cost=2)
    clock.advance(0.03)
    refused = limiter.acquire("k", plan)
    assert refused.retry_after == 0.07
    clock.advance(0.069999)
    assert not limiter.acquire("k", plan).allowed
    clock.advance(0.000001)
    assert limiter.acquire("k", plan).allowed


def test_quota_resets_at_shanghai_midnight_not_utc() -> None:
    clock = FakeClock(shanghai(2025, 3, 1, 23, 59, 59))
    limiter = InProcessLimiter(clock=clock)
    plan = RatePlan("d", requests_per_second=1000, burst=10, daily_quota=2)
    assert limiter.acquire("k", plan, cost=2).quota_reset_after == 1
    refused = limiter.acquire("k", plan)
    assert (refused.reason, refused.retry_after, refused.quota_reset_after) == ("quota", 1.0, 1)
    clock.advance(1)  # 00:00:00 Shanghai = 16:00 UTC
    fresh = limiter.acquire("k", plan)
    assert (fresh.allowed, fresh.quota_remaining, fresh.quota_reset_after) == (True, 1, 86400)
    clock.advance(0.5)
    assert limiter.peek("k", plan).quota_reset_after == 86400  # 86399.5 rounded up


def test_utc_midnight_does_not_reset_the_quota() -> None:
    clock = FakeClock(shanghai(2025, 3, 2, 7, 59, 59))  # 23:59:59 UTC
    limiter = InProcessLimiter(clock=clock)
    plan = RatePlan("d", requests_per_second=1000, burst=10, daily_quota=1)
    assert limiter.acquire("k", plan).allowed
    clock.advance(2)  # past midnight UTC, still the same Shanghai day
    refused = limiter.acquire("k", plan)
    assert (refused.reason, refused.quota_reset_after) == ("quota", 16 * 3600 - 1)


def test_zero_quota_refuses_everything() -> None:
    limiter = InProcessLimiter(clock=FakeClock(shanghai(2025, 3, 1, 12, 0)))
    plan = RatePlan("none", requests_per_second=10, burst=10, daily_quota=0)
    refused = limiter.acquire("k", plan)
    assert (refused.allowed, refused.reason, refused.quota_remaining) == (False, "quota", 0)


def test_max_keys_evicts_least_recently_used() -> None:
    limiter = InProcessLimiter(clock=FakeClock(shanghai(2025, 3, 1, 12, 0)), max_keys=3)
    plan = RatePlan("m", requests_per_second=0.1, burst=2, daily_quota=5)
    for k in ("a", "b", "c"):
        limiter.acquire(k, plan)
    limiter.acquire("a", plan)  # "a" is now the most recently used, "b" the least
    limiter.acquire("d", plan)
    assert len(limiter) == 3
    assert limiter.peek("b", plan).limit_remaining == 2  # evicted: fresh again
    assert limiter.peek("a", plan).limit_remaining == 0
    assert limiter.peek("c", plan).limit_remaining == 1


def test_sweep_drops_keys_once_their_day_is_over_and_keeps_live_ones() -> None:
    clock = FakeClock(shanghai(2025, 3, 1, 23, 0))
    limiter = InProcessLimiter(clock=clock, sweep_interval=60)
    plan = RatePlan("m", requests_per_second=1, burst=1, daily_quota=5)
    limiter.acquire("old", plan)
    clock.advance(120)  # same day, TAT long past: still holds today's quota use
    limiter.acquire("live", plan)
    assert len(limiter) == 2
    assert limiter.peek("old", plan).quota_remaining == 4
    clock.advance(3600)  # next Shanghai day
    limiter.acquire("new", plan)
    assert len(limiter) == 1
    assert limiter.peek("new", plan).quota_remaining == 4


def test_reset_and_close_forget_state() -> None:
    limiter = InProcessLimiter(clock=FakeClock(shanghai(2025, 3, 1, 12, 0)))
    plan = RatePlan("m", requests_per_second=1, burst=1, daily_quota=5)
    limiter.acquire("a", plan)
    limiter.acquire("b", plan)
    limiter.reset("a")
    assert len(limiter) == 1
    limiter.close()
    assert len(limiter) == 0
