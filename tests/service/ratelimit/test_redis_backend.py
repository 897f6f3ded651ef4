"""Redis backend specifics: key layout and expiry, day rollover, NOSCRIPT, unreachable Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from service.ratelimit import LimiterUnavailable, RatePlan, RedisLimiter
from service.ratelimit.fallback import FallbackLimiter
from service.ratelimit.memory import InProcessLimiter

pytestmark = pytest.mark.redis

REDIS_URL = os.environ.get("CREDITSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NO_RETRY = Retry(NoBackoff(), 0)  # an unreachable Redis is skipped at once
SHANGHAI = ZoneInfo("Asia/Shanghai")
PLAN = RatePlan("std", requests_per_second=1, burst=3, daily_quota=5)


@pytest.fixture(scope="module")
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    k = f"test:{uuid.uuid4().hex}"
    yield k
    client.delete(RedisLimiter(client).redis_key(k))


def ms_to_shanghai_midnight() -> float:
    now = time.time()
    local = datetime.fromtimestamp(now, SHANGHAI)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    return (midnight.timestamp() - now) * 1000


def shanghai_day_number() -> int:
    return (datetime.now(SHANGHAI).date() - datetime(1970, 1, 1).date()).days


def test_state_is_one_prefixed_hash_expiring_at_shanghai_midnight(
    client: redis.Redis, key: str
) -> None:
    limiter = RedisLimiter(client)
    limiter.acquire(key, PLAN, cost=2)
    redis_key = f"cs:rl:{{{key}}}"
    assert limiter.redis_key(key) == redis_key
    assert client.type(redis_key) == b"hash"
    fields = client.hgetall(redis_key)
    assert set(fields) == {b"tat", b"day", b"used"}
    assert int(fields[b"used"]) == 2
    assert int(fields[b"day"]) == shanghai_day_number()
    assert abs(client.pttl(redis_key) - ms_to_shanghai_midnight()) < 2000


def test_peek_and_refusals_write_nothing(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    limiter.peek(key, PLAN)
    assert not client.exists(limiter.redis_key(key))
    zero = RatePlan("zero", requests_per_second=1, burst=3, daily_quota=0)
    assert limiter.acquire(key, zero).reason == "quota"
    assert not client.exists(limiter.redis_key(key))


def test_yesterdays_usage_does_not_count(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    redis_key = limiter.redis_key(key)
    client.hset(redis_key, mapping={"tat": 0, "day": shanghai_day_number() - 1, "used": 5})
    decision = limiter.acquire(key, PLAN)
    assert (decision.allowed, decision.quota_remaining, decision.limit_remaining) == (True, 4, 2)
    assert int(client.hget(redis_key, "used") or 0) == 1


def test_todays_usage_counts(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    redis_key = limiter.redis_key(key)
    client.hset(redis_key, mapping={"tat": 0, "day": shanghai_day_number(), "used": 5})
    assert limiter.acquire(key, PLAN).reason == "quota"


class NoScriptOnce:
    """A client proxy whose first EVALSHA answers NOSCRIPT, as after a Redis restart."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner = inner
        self.evalsha_calls = 0
        self.loads = 0

    def evalsha(self, *args: Any) -> Any:
        self.evalsha_calls += 1
        if self.evalsha_calls == 1:
            raise NoScriptError("NOSCRIPT No matching script.")
        return self.inner.evalsha(*args)

    def script_load(self, script: str) -> Any:
        self.loads += 1
        return self.inner.script_load(script)


def test_noscript_loads_the_script_and_retries(client: redis.Redis, key: str) -> None:
    proxy = NoScriptOnce(client)
    limiter = RedisLimiter(proxy)  # type: ignore[arg-type]
    decision = limiter.acquire(key, PLAN)
    assert (decision.allowed, decision.limit_remaining) == (True, 2)
    assert (proxy.evalsha_calls, proxy.loads) == (2, 1)
    limiter.acquire(key, PLAN)
    assert (proxy.evalsha_calls, proxy.loads) == (3, 1)


def test_unreachable_redis_raises_limiter_unavailable() -> None:
    # from_url disables redis-py's automatic retries, so this fails at once.
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(LimiterUnavailable) as info:
            limiter.acquire("k", PLAN)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
        with pytest.raises(LimiterUnavailable):
            limiter.peek("k", PLAN)
        with pytest.raises(LimiterUnavailable):
            limiter.reset("k")
    finally:
        limiter.close()


def test_script_errors_surface_as_limiter_unavailable(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    client.set(limiter.redis_key(key), "not a hash")  # WRONGTYPE inside the script
    with pytest.raises(LimiterUnavailable, match="redis"):
        limiter.acquire(key, PLAN)


# ---- acquire_many: one pipelined round trip for a group of checks --------------------------


def test_acquire_many_charges_in_order_like_acquire(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    other = f"{key}-other"
    try:
        decisions = limiter.acquire_many([(key, PLAN, 1)] * 4 + [(other, PLAN, 1)])
        assert [d.allowed for d in decisions] == [True, True, True, False, True]
        assert [d.limit_remaining for d in decisions[:3]] == [2, 1, 0]
        assert decisions[3].reason == "rate"
        assert decisions[4].quota_remaining == PLAN.daily_quota - 1
        # The refused charge consumed nothing: three of the five units are used.
        assert limiter.peek(key, PLAN).quota_remaining == PLAN.daily_quota - 3
    finally:
        client.delete(limiter.redis_key(other))


def test_acquire_many_with_repeated_keys_matches_acquiring_one_by_one(
    client: redis.Redis, key: str
) -> None:
    """The script reads a repeated key once and writes it once: the decisions and the stored
    state are still those of charging each in turn."""
    limiter = RedisLimiter(client)
    many = {"a": f"{key}-a", "b": f"{key}-b"}
    single = {"a": f"{key}-a1", "b": f"{key}-b1"}
    sequence = ["a", "a", "b", "a", "b", "a", "a", "b"]
    try:
        together = limiter.acquire_many([(many[k], PLAN, 1) for k in sequence])
        alone = [limiter.acquire(single[k], PLAN, 1) for k in sequence]

        def visible(d: Any) -> tuple[object, ...]:
            return (d.allowed, d.reason, d.limit_remaining, d.quota_remaining)

        assert [visible(d) for d in together] == [visible(d) for d in alone]
        assert [d.allowed for d in together] == [True, True, True, True, True, False, False, True]
        for name in ("a", "b"):
            stored = client.hgetall(limiter.redis_key(many[name]))
            expected = client.hgetall(limiter.redis_key(single[name]))
            assert stored[b"used"] == expected[b"used"]
            assert stored[b"day"] == expected[b"day"]
            assert client.pttl(limiter.redis_key(many[name])) > 0
    finally:
        client.delete(*(limiter.redis_key(k) for k in [*many.values(), *single.values()]))


def test_acquire_many_after_script_flush_charges_each_once(client: redis.Redis, key: str) -> None:
    limiter = RedisLimiter(client)
    client.script_flush()
    decisions = limiter.acquire_many([(key, PLAN, 1)] * 2)
    assert [d.allowed for d in decisions] == [True, True]
    assert limiter.peek(key, PLAN).quota_remaining == PLAN.daily_quota - 2


def test_a_charge_failing_alone_spares_the_others(client: redis.Redis, key: str) -> None:
    """One key holding something else fails its charge only; the others are charged once,
    in Redis. Through the fallback limiter that one charge goes to the local share, and the
    others are not charged again there."""
    limiter = RedisLimiter(client)
    broken, other = f"{key}-broken", f"{key}-other"
    client.set(limiter.redis_key(broken), "not a hash")  # WRONGTYPE inside the script
    charges = [(key, PLAN, 1), (broken, PLAN, 1), (other, PLAN, 1)]
    try:
        first, failed, last = limiter.acquire_many_each(charges)
        assert isinstance(failed, LimiterUnavailable)
        assert not isinstance(first, LimiterUnavailable)
        assert first.allowed
        assert not isinstance(last, LimiterUnavailable)
        assert last.allowed
        with pytest.raises(LimiterUnavailable, match="redis"):
            limiter.acquire_many(charges)  # the plain form: any failure fails the call

        local = InProcessLimiter()
        fallback = FallbackLimiter(limiter, local, nodes=1, quota_fail_closed=False)
        decisions = fallback.acquire_many(charges)
        assert [d.allowed for d in decisions] == [True, True, True]
        assert not fallback.degraded  # an error on one key is not an outage
        # Redis: three calls charged `key` and `other` three times each (1 + 1 + 1).
        assert limiter.peek(key, PLAN).quota_remaining == PLAN.daily_quota - 3
        assert limiter.peek(other, PLAN).quota_remaining == PLAN.daily_quota - 3
        # The local share: only the broken key's one charge of the last call.
        assert local.peek(key, PLAN).quota_remaining == PLAN.daily_quota
        assert local.peek(broken, PLAN).quota_remaining == PLAN.daily_quota - 1
        assert fallback.fallback_count == 1
    finally:
        client.delete(limiter.redis_key(broken), limiter.redis_key(other))


def test_acquire_many_of_nothing_needs_no_redis() -> None:
    limiter = RedisLimiter.from_url("redis://127.0.0.1:1/0")
    try:
        assert limiter.acquire_many([]) == []
        with pytest.raises(LimiterUnavailable):
            limiter.acquire_many([("k", PLAN, 1)])
    finally:
        limiter.close()
