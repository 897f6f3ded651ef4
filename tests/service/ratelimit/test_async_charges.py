"""The charging path of single checks on the event loop: ``acquire_many_each_async`` (one
``redis.asyncio`` client per event loop), ``FallbackLimiter.acquire_many_async`` and
``charge_each_async``, each deciding exactly as its synchronous twin does."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import uuid
from collections.abc import Coroutine, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from service.problems import ProblemError
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
from service.ratelimit.charging import ChargeOutcome, charge_each, charge_each_async, client_key
from tests.service.ratelimit.test_fallback import FlakyPrimary
from tests.service.ratelimit.test_memory import FakeClock

T = TypeVar("T")

REDIS_URL = os.environ.get("CREDITSHARE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
NO_RETRY = Retry(NoBackoff(), 0)  # an unreachable Redis is skipped at once
TIMEOUT = 5.0  # no asyncio.run of this module may hang
START = datetime(2025, 6, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()

# Rates so slow that the time between two calls does not matter.
SLOW = RatePlan("slow", requests_per_second=0.01, burst=2, daily_quota=1_000)  # burst refuses
SCARCE = RatePlan("scarce", requests_per_second=0.01, burst=10, daily_quota=3)  # quota refuses
PLANS = {"slow": SLOW, "scarce": SCARCE}
# Each of two nodes' share while Redis is down: rate 5/s, burst 2, quota 50.
SHARED = RatePlan("shared", requests_per_second=10, burst=4, daily_quota=100)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``coro`` on a new event loop, bounded by :data:`TIMEOUT`."""
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def essentials(d: Decision) -> tuple[object, ...]:
    """What does not depend on when exactly the decision was made."""
    return (d.allowed, d.reason, d.limit_remaining, d.quota_limit, d.quota_remaining)


def decided(outcome: Decision | LimiterUnavailable) -> Decision:
    assert isinstance(outcome, Decision), outcome
    return outcome


def plan_named(name: str) -> RatePlan:
    """The plans of the charging tests; an unknown one cannot be used (503), as a stored
    plan that does not parse."""
    try:
        return PLANS[name]
    except KeyError:
        raise ProblemError("service-unavailable") from None


class AsyncFlakyPrimary(FlakyPrimary):
    """test_fallback's flaky primary with an asynchronous round trip as well, counting the
    calls that reach it, asynchronous and synchronous apart. With ``hold`` set, the
    asynchronous call waits for it to be released."""

    def __init__(self) -> None:
        super().__init__()
        self.async_calls = 0
        self.inner = InProcessLimiter(clock=FakeClock(START))
        self.hold: asyncio.Event | None = None
        self.closed = 0

    @property
    def sync_calls(self) -> int:
        return self.calls

    async def acquire_many_each_async(
        self, charges: Sequence[Charge]
    ) -> list[Decision | LimiterUnavailable]:
        self.async_calls += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.down:
            raise LimiterUnavailable("down")
        return list(self.inner.acquire_many(charges))

    def acquire_many_each(self, charges: Sequence[Charge]) -> list[Decision | LimiterUnavailable]:
        return list(self.acquire_many(charges))

    async def aclose(self) -> None:
        self.closed += 1


class SyncOnlyPrimary(FlakyPrimary):
    """A primary without any asynchronous method (e.g. a third-party limiter), up."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.inner = InProcessLimiter(clock=FakeClock(START))


class CountingSyncClient:
    """A synchronous client proxy counting the scripts run through it."""

    def __init__(self, inner: redis.Redis) -> None:
        self.inner = inner
        self.evalsha_calls = 0

    def evalsha(self, *args: Any) -> Any:
        self.evalsha_calls += 1
        return self.inner.evalsha(*args)

    def script_load(self, script: str) -> Any:
        return self.inner.script_load(script)


class AsyncNoScript:
    """An asynchronous client proxy answering NOSCRIPT to its first ``noscripts``
    EVALSHAs (as after a Redis restart), its ``script_load`` possibly lying about the SHA."""

    def __init__(
        self, inner: redis.asyncio.Redis | None, noscripts: int, sha: str | None = None
    ) -> None:
        self.inner = inner
        self.noscripts = noscripts
        self.sha = sha
        self.evalsha_calls = 0
        self.loads = 0

    async def evalsha(self, *args: Any) -> Any:
        self.evalsha_calls += 1
        if self.evalsha_calls <= self.noscripts:
            raise NoScriptError("NOSCRIPT No matching script.")
        assert self.inner is not None
        return await self.inner.evalsha(*args)

    async def script_load(self, script: str) -> Any:
        self.loads += 1
        if self.sha is not None:
            return self.sha
        assert self.inner is not None
        return await self.inner.script_load(script)

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()


class Factory:
    """An ``async_client`` factory recording the clients it made, each named ``name`` on
    the server (``CLIENT LIST``)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.made: list[redis.asyncio.Redis] = []

    def __call__(self) -> redis.asyncio.Redis:
        made = redis.asyncio.Redis.from_url(
            self.url, socket_timeout=2, socket_connect_timeout=1, client_name=self.name
        )
        self.made.append(made)
        return made


def named_connections(client: redis.Redis, name: str) -> int:
    return sum(1 for c in client.client_list() if c.get("name") == name)


def wait_for_connections(client: redis.Redis, name: str, count: int) -> None:
    """Until the server has ``count`` connections named ``name`` (a closed socket takes
    the server a moment), at most a second."""
    deadline = time.monotonic() + 1.0
    while named_connections(client, name) != count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert named_connections(client, name) == count


def with_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


@pytest.fixture(scope="module")
def client(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


class Keys:
    """Unique limiter keys, their Redis state deleted after the test."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> str:
        key = f"test:{uuid.uuid4().hex}"
        self.made.append(key)
        return key

    def client_id(self) -> str:
        """A client id whose limiter key (``client_key``) is cleaned up."""
        client_id = f"test-{uuid.uuid4().hex}"
        self.made.append(client_key(client_id))
        return client_id


@pytest.fixture
def keys(client: redis.Redis) -> Iterator[Keys]:
    made = Keys()
    yield made
    if made.made:
        naming = RedisLimiter(client)
        client.delete(*(naming.redis_key(k) for k in made.made))


@pytest.fixture
def shared(client: redis.Redis) -> Iterator[RedisLimiter]:
    """A limiter as the service builds it (``from_url``: a factory of asyncio clients)."""
    limiter = RedisLimiter.from_url(REDIS_URL)
    yield limiter
    limiter.close()


@pytest.fixture
def dead() -> Iterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(DEAD_URL)
    yield limiter
    limiter.close()


# ---- RedisLimiter.acquire_many_each_async ---------------------------------------------------


@pytest.mark.redis
def test_async_charges_decide_as_the_sync_ones(
    client: redis.Redis, shared: RedisLimiter, keys: Keys
) -> None:
    """Several clients and plans, keys repeating, over two calls: the async round trip
    decides each charge as the synchronous one does on a twin set of keys, and leaves the
    same state in Redis."""
    sync_keys = [keys() for _ in range(3)]
    async_keys = [keys() for _ in range(3)]
    first = [(0, SLOW), (1, SCARCE), (0, SLOW), (2, SLOW), (0, SLOW), (1, SCARCE)]
    second = [(1, SCARCE), (1, SCARCE), (2, SLOW), (2, SLOW), (0, SLOW)]

    def charges(names: list[str], order: list[tuple[int, RatePlan]]) -> list[Charge]:
        return [(names[i], plan, 1) for i, plan in order]

    sync = [
        decided(o)
        for order in (first, second)
        for o in shared.acquire_many_each(charges(sync_keys, order))
    ]

    async def charge_async() -> list[Decision]:
        try:
            return [
                decided(o)
                for order in (first, second)
                for o in await shared.acquire_many_each_async(charges(async_keys, order))
            ]
        finally:
            await shared.aclose()

    together = run(charge_async())

    assert [essentials(d) for d in together] == [essentials(d) for d in sync]
    assert [d.allowed for d in together[:6]] == [True, True, True, True, False, True]
    assert [d.allowed for d in together[6:]] == [True, False, True, False, False]
    assert [d.reason for d in together if not d.allowed] == [
        "rate",
        "quota",
        "rate",
        "rate",
    ]
    for a, s in zip(together, sync, strict=True):  # the times too, but for the time passed
        assert math.isclose(a.reset_after, s.reset_after, abs_tol=1.0)
        assert math.isclose(a.retry_after, s.retry_after, abs_tol=1.0)
        assert abs(a.quota_reset_after - s.quota_reset_after) <= 1
    for s_key, a_key in zip(sync_keys, async_keys, strict=True):
        stored = client.hgetall(shared.redis_key(a_key))
        expected = client.hgetall(shared.redis_key(s_key))
        assert (stored[b"used"], stored[b"day"]) == (expected[b"used"], expected[b"day"])
        assert client.pttl(shared.redis_key(a_key)) > 0


@pytest.mark.redis
def test_async_charges_use_the_event_loops_client_not_the_sync_one(
    client: redis.Redis, keys: Keys
) -> None:
    """With a factory, the async path never touches the synchronous client (here one that
    could not reach anything)."""
    key = keys()
    sync_dead = redis.Redis.from_url(DEAD_URL, retry=NO_RETRY)
    limiter = RedisLimiter(sync_dead, async_client=Factory(REDIS_URL, f"t-{uuid.uuid4().hex}"))

    async def charge() -> list[Decision | LimiterUnavailable]:
        try:
            return await limiter.acquire_many_each_async([(key, SLOW, 1)] * 3)
        finally:
            await limiter.aclose()

    try:
        outcomes = run(charge())
    finally:
        sync_dead.close()
    assert [essentials(decided(o)) for o in outcomes] == [
        (True, "ok", 1, 1_000, 999),
        (True, "ok", 0, 1_000, 998),
        (False, "rate", 0, 1_000, 998),
    ]


@pytest.mark.redis
def test_async_charges_reload_the_script_after_script_flush(
    client: redis.Redis, shared: RedisLimiter, keys: Keys
) -> None:
    key = keys()

    async def charge() -> list[Decision | LimiterUnavailable]:
        try:
            await shared.acquire_many_each_async([(key, SLOW, 1)])  # the script is cached
            client.script_flush()
            return await shared.acquire_many_each_async([(key, SLOW, 1)] * 2)
        finally:
            await shared.aclose()

    outcomes = run(charge())
    assert [essentials(decided(o)) for o in outcomes] == [
        (True, "ok", 0, 1_000, 998),
        (False, "rate", 0, 1_000, 998),
    ]
    # Charged once each, not once more on the retry after NOSCRIPT.
    assert shared.peek(key, SLOW).quota_remaining == 998


@pytest.mark.redis
def test_async_noscript_loads_the_script_once_and_charges_once(
    client: redis.Redis, keys: Keys
) -> None:
    key = keys()
    proxies: list[AsyncNoScript] = []

    def factory() -> Any:
        proxies.append(AsyncNoScript(redis.asyncio.Redis.from_url(REDIS_URL), noscripts=1))
        return proxies[-1]

    limiter = RedisLimiter(client, async_client=factory)

    async def charge() -> tuple[list[Decision | LimiterUnavailable], ...]:
        try:
            first = await limiter.acquire_many_each_async([(key, SCARCE, 1)] * 2)
            counts = (proxies[0].evalsha_calls, proxies[0].loads)
            assert counts == (2, 1)
            second = await limiter.acquire_many_each_async([(key, SCARCE, 1)])
            assert (proxies[0].evalsha_calls, proxies[0].loads) == (3, 1)
            return first, second
        finally:
            await limiter.aclose()

    first, second = run(charge())
    assert len(proxies) == 1
    assert [decided(o).quota_remaining for o in [*first, *second]] == [2, 1, 0]
    assert limiter.peek(key, SCARCE).quota_remaining == 0


def test_async_script_sha_mismatch_is_unavailable_without_looping() -> None:
    proxy = AsyncNoScript(None, noscripts=1_000, sha="0" * 40)
    sync_dead = redis.Redis.from_url(DEAD_URL, retry=NO_RETRY)
    limiter = RedisLimiter(sync_dead, async_client=lambda: proxy)  # type: ignore[arg-type,return-value]

    async def charge() -> None:
        try:
            with pytest.raises(LimiterUnavailable, match="SHA mismatch"):
                await limiter.acquire_many_each_async([("k", SLOW, 1)])
        finally:
            await limiter.aclose()

    try:
        run(charge())
    finally:
        sync_dead.close()
    assert (proxy.evalsha_calls, proxy.loads) == (1, 1)


@pytest.mark.redis
def test_async_charge_on_a_key_of_another_type_fails_alone(
    client: redis.Redis, shared: RedisLimiter, keys: Keys
) -> None:
    """One key holding something else fails its charge only; the others are charged once,
    in Redis. Through the fallback limiter that one charge goes to the local share."""
    key, broken, other = keys(), keys(), keys()
    client.set(shared.redis_key(broken), "not a hash")  # WRONGTYPE inside the script
    charges: list[Charge] = [(key, SLOW, 1), (broken, SLOW, 1), (other, SLOW, 1)]
    local = InProcessLimiter()
    fallback = FallbackLimiter(shared, local, nodes=1, quota_fail_closed=False)

    async def charge() -> tuple[list[Decision | LimiterUnavailable], list[Decision]]:
        try:
            each = await shared.acquire_many_each_async(charges)
            return each, await fallback.acquire_many_async(charges)
        finally:
            await fallback.aclose()

    (first, failed, last), through_fallback = run(charge())
    assert isinstance(failed, LimiterUnavailable)
    assert "another type" in str(failed)
    assert essentials(decided(first)) == (True, "ok", 1, 1_000, 999)
    assert essentials(decided(last)) == (True, "ok", 1, 1_000, 999)
    assert client.get(shared.redis_key(broken)) == b"not a hash"  # left alone

    assert [d.allowed for d in through_fallback] == [True, True, True]
    assert not fallback.degraded  # an error on one key is not an outage
    assert fallback.fallback_count == 1
    # Redis: both calls charged `key` and `other`; the local share only the broken key.
    assert shared.peek(key, SLOW).quota_remaining == 998
    assert shared.peek(other, SLOW).quota_remaining == 998
    assert local.peek(key, SLOW).quota_remaining == 1_000
    assert local.peek(broken, SLOW).quota_remaining == 999


def test_acquire_many_async_decides_all_or_raises_the_first_failure(
    client: redis.Redis, shared: RedisLimiter, keys: Keys
) -> None:
    """The limiter's own ``acquire_many_async`` (what ``charge_each_async`` awaits when
    given the Redis limiter itself): every decision, or the failure of a charge raised."""
    key, broken = keys(), keys()
    client.set(shared.redis_key(broken), "not a hash")

    async def charge() -> tuple[list[Decision], BaseException | None]:
        try:
            decisions = await shared.acquire_many_async([(key, SLOW, 1), (key, SLOW, 1)])
            try:
                await shared.acquire_many_async([(key, SLOW, 1), (broken, SLOW, 1)])
            except LimiterUnavailable as exc:
                return decisions, exc
            return decisions, None
        finally:
            await shared.aclose()

    decisions, failure = run(charge())
    assert [essentials(d) for d in decisions] == [
        (True, "ok", 1, 1_000, 999),
        (True, "ok", 0, 1_000, 998),  # a burst of two, both taken
    ]
    assert isinstance(failure, LimiterUnavailable)


def test_unreachable_redis_is_unavailable_promptly(dead: RedisLimiter) -> None:
    async def charge() -> float:
        try:
            assert await dead.acquire_many_each_async([]) == []
            with pytest.raises(CostExceedsPlan):  # checked before Redis is asked
                await dead.acquire_many_each_async([("k", SLOW, 3)])
            started = time.monotonic()
            for _ in range(2):  # the loop's client, kept after a failure, fails again
                with pytest.raises(LimiterUnavailable, match="redis") as info:
                    await dead.acquire_many_each_async([("k", SLOW, 1), ("j", SCARCE, 1)])
                assert isinstance(info.value.__cause__, redis.ConnectionError)
            return time.monotonic() - started
        finally:
            await dead.aclose()

    assert run(charge()) < 1.0


@pytest.mark.redis
def test_each_event_loop_gets_its_own_client(client: redis.Redis, keys: Keys) -> None:
    """A client's connections belong to the loop that opened them: a second loop gets a
    client of its own, even if nobody closed the limiter on the first."""
    key = keys()
    factory = Factory(REDIS_URL, f"t-{uuid.uuid4().hex}")
    limiter = RedisLimiter(client, async_client=factory)

    async def on_first_loop() -> Decision:
        (outcome,) = await limiter.acquire_many_each_async([(key, SLOW, 1)])
        await factory.made[0].aclose()  # behind the limiter's back: it still holds it
        return decided(outcome)

    async def on_second_loop() -> Decision:
        try:
            (outcome,) = await limiter.acquire_many_each_async([(key, SLOW, 1)])
            return decided(outcome)
        finally:
            await limiter.aclose()

    assert essentials(run(on_first_loop())) == (True, "ok", 1, 1_000, 999)
    assert essentials(run(on_second_loop())) == (True, "ok", 0, 1_000, 998)
    assert len(factory.made) == 2
    assert factory.made[0] is not factory.made[1]
    wait_for_connections(client, factory.name, 0)


@pytest.mark.redis
def test_aclose_closes_the_loops_client(client: redis.Redis, keys: Keys) -> None:
    key = keys()
    factory = Factory(REDIS_URL, f"t-{uuid.uuid4().hex}")
    limiter = RedisLimiter(client, async_client=factory)

    async def charge_close_charge() -> None:
        try:
            await limiter.acquire_many_each_async([(key, SCARCE, 1)])
            await limiter.acquire_many_each_async([(key, SCARCE, 1)])
            assert len(factory.made) == 1  # one client for the loop, kept
            assert named_connections(client, factory.name) == 1
            await limiter.aclose()
            wait_for_connections(client, factory.name, 0)
            await limiter.aclose()  # nothing left to close
            # The limiter is still usable on the loop, with a new client.
            (outcome,) = await limiter.acquire_many_each_async([(key, SCARCE, 1)])
            assert essentials(decided(outcome)) == (True, "ok", 7, 3, 0)
            assert len(factory.made) == 2
        finally:
            await limiter.aclose()

    run(charge_close_charge())
    wait_for_connections(client, factory.name, 0)


@pytest.mark.redis
def test_from_url_serves_successive_event_loops(client: redis.Redis, keys: Keys) -> None:
    """Two ``asyncio.run``s, as the service's factory builds the limiter: each loop is
    served, and ``aclose`` on it closes its connection."""
    key = keys()
    name = f"t-{uuid.uuid4().hex}"
    limiter = RedisLimiter.from_url(with_name(REDIS_URL, name))

    async def charge() -> Decision:
        try:
            (outcome,) = await limiter.acquire_many_each_async([(key, SLOW, 1)])
            assert named_connections(client, name) == 1
            return decided(outcome)
        finally:
            await limiter.aclose()

    try:
        assert essentials(run(charge())) == (True, "ok", 1, 1_000, 999)
        wait_for_connections(client, name, 0)
        assert essentials(run(charge())) == (True, "ok", 0, 1_000, 998)
        wait_for_connections(client, name, 0)
    finally:
        limiter.close()


@pytest.mark.redis
def test_a_plain_sync_client_answers_async_charges_synchronously(
    client: redis.Redis, keys: Keys
) -> None:
    key = keys()
    counting = CountingSyncClient(client)
    limiter = RedisLimiter(counting)  # type: ignore[arg-type]

    async def charge() -> list[Decision | LimiterUnavailable]:
        try:
            return await limiter.acquire_many_each_async([(key, SCARCE, 1)] * 4)
        finally:
            await limiter.aclose()  # no asynchronous client: nothing to close

    outcomes = run(charge())
    assert counting.evalsha_calls == 1  # the one synchronous round trip
    assert [essentials(decided(o)) for o in outcomes] == [
        (True, "ok", 9, 3, 2),
        (True, "ok", 8, 3, 1),
        (True, "ok", 7, 3, 0),
        (False, "quota", 7, 3, 0),
    ]


def test_a_plain_sync_client_to_an_unreachable_redis_is_unavailable() -> None:
    sync_dead = redis.Redis.from_url(DEAD_URL, socket_connect_timeout=0.25, retry=NO_RETRY)
    limiter = RedisLimiter(sync_dead, close_client=True)

    async def charge() -> None:
        with pytest.raises(LimiterUnavailable, match="redis"):
            await limiter.acquire_many_each_async([("k", SLOW, 1)])
        assert await limiter.acquire_many_each_async([]) == []

    try:
        run(charge())
    finally:
        limiter.close()


# ---- FallbackLimiter.acquire_many_async -----------------------------------------------------


def test_fallback_on_unreachable_redis_decides_locally_as_the_sync_path() -> None:
    """Redis down: the same local decisions, fallback counts and events as
    ``acquire_many``, charge by charge."""
    charges: list[Charge] = [("a", SHARED, 1)] * 3 + [("b", SHARED, 1)]
    limiters: list[FallbackLimiter] = []
    events: list[list[str]] = []
    for _ in range(2):
        happened: list[str] = []
        events.append(happened)
        limiters.append(
            FallbackLimiter(
                RedisLimiter.from_url(DEAD_URL),
                InProcessLimiter(clock=FakeClock(START)),
                nodes=2,
                quota_fail_closed=False,
                on_fallback=lambda happened=happened: happened.append("fallback"),
                monotonic=FakeClock(100.0),
            )
        )
    sync, on_loop = limiters

    async def charge_twice() -> tuple[list[Decision], list[Decision], float]:
        try:
            started = time.monotonic()
            first = await on_loop.acquire_many_async(charges)
            elapsed = time.monotonic() - started
            assert on_loop.degraded
            return first, await on_loop.acquire_many_async(charges), elapsed
        finally:
            await on_loop.aclose()

    try:
        expected = [sync.acquire_many(charges), sync.acquire_many(charges)]
        first, second, elapsed = run(charge_twice())
    finally:
        for limiter in limiters:
            limiter.close()
    assert [first, second] == expected
    assert [d.allowed for d in first] == [True, True, False, True]  # a node's share: burst 2
    assert [d.allowed for d in second] == [False, False, False, True]
    assert first[2].reason == "rate"
    assert on_loop.degraded
    assert on_loop.fallback_count == sync.fallback_count == 8
    assert events[1] == events[0] == ["fallback"] * 8
    assert elapsed < 1.0


class TickingClock:
    """A monotonic clock that moves on by ``step`` seconds at every read."""

    def __init__(self, start: float, step: float) -> None:
        self.now, self.step = start, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_cooldown_ending_while_a_group_is_charged_locally_asks_nobody_synchronously() -> None:
    """While Redis is down a group is charged locally; if the cool-down ends halfway through
    it, the rest of the group stays local: the probe is the next group's, awaited, never a
    blocking call on the loop."""
    primary = AsyncFlakyPrimary()
    limiter = FallbackLimiter(
        primary,  # type: ignore[arg-type]
        InProcessLimiter(clock=FakeClock(START)),
        nodes=1,
        quota_fail_closed=False,
        cooldown=1.0,
        monotonic=TickingClock(100.0, 0.1),
    )
    charges: list[Charge] = [("k", SHARED, 1)] * 4

    async def scenario() -> None:
        for _ in range(6):
            decisions = await limiter.acquire_many_async(charges)
            assert len(decisions) == 4
        primary.down = False
        for _ in range(6):
            await limiter.acquire_many_async(charges)
        assert not limiter.degraded

    run(scenario())
    assert primary.async_calls >= 2
    assert primary.sync_calls == 0


def test_fallback_does_not_ask_during_the_cooldown_then_probes_once() -> None:
    primary = AsyncFlakyPrimary()
    ticks = FakeClock(100.0)
    limiter = FallbackLimiter(
        primary,  # type: ignore[arg-type]
        InProcessLimiter(clock=FakeClock(START)),
        nodes=1,
        quota_fail_closed=False,
        cooldown=1.0,
        monotonic=ticks,
    )
    charges: list[Charge] = [("k", SHARED, 1)] * 2

    async def scenario() -> None:
        down = await limiter.acquire_many_async(charges)
        assert [d.allowed for d in down] == [True, True]
        assert limiter.degraded
        assert (primary.async_calls, limiter.fallback_count) == (1, 2)
        ticks.advance(0.5)
        await limiter.acquire_many_async(charges)
        assert (primary.async_calls, limiter.fallback_count) == (1, 4)  # not asked
        ticks.advance(0.5)
        await limiter.acquire_many_async(charges)
        assert (primary.async_calls, limiter.fallback_count) == (2, 6)  # one probe, down
        await limiter.acquire_many_async(charges)
        assert (primary.async_calls, limiter.fallback_count) == (2, 8)
        primary.down = False
        ticks.advance(1.0)
        up = await limiter.acquire_many_async(charges)
        assert primary.async_calls == 3
        assert not limiter.degraded
        assert [essentials(d) for d in up] == [
            (True, "ok", 3, 100, 99),  # the full plan, from the primary's fresh state
            (True, "ok", 2, 100, 98),
        ]
        await limiter.acquire_many_async(charges)
        assert (primary.async_calls, limiter.fallback_count) == (4, 8)
        await limiter.aclose()

    run(scenario())
    assert primary.sync_calls == 0  # never a blocking call on the loop
    assert primary.closed == 1


def test_fallback_lets_one_concurrent_call_probe() -> None:
    """After the cool-down exactly one call probes; one made while the probe is in flight
    stays local and does not wait for it."""
    primary = AsyncFlakyPrimary()
    ticks = FakeClock(100.0)
    limiter = FallbackLimiter(
        primary,  # type: ignore[arg-type]
        InProcessLimiter(clock=FakeClock(START)),
        nodes=1,
        quota_fail_closed=False,
        cooldown=1.0,
        monotonic=ticks,
    )

    async def scenario() -> None:
        await limiter.acquire_many_async([("k", SHARED, 1)])
        assert primary.async_calls == 1
        ticks.advance(1.0)
        primary.hold = asyncio.Event()
        probe = asyncio.create_task(limiter.acquire_many_async([("k", SHARED, 1)]))
        while primary.async_calls < 2:
            await asyncio.sleep(0)
        other = await limiter.acquire_many_async([("j", SHARED, 1)])
        assert [d.allowed for d in other] == [True]
        assert primary.async_calls == 2  # the probe only
        assert not probe.done()
        primary.hold.set()
        assert [d.allowed for d in await probe] == [True]

    run(scenario())
    assert limiter.degraded
    assert limiter.fallback_count == 3
    assert primary.sync_calls == 0


def test_fallback_fails_closed_as_the_sync_path() -> None:
    primaries = [AsyncFlakyPrimary(), AsyncFlakyPrimary()]
    sync, on_loop = (
        FallbackLimiter(
            primary,  # type: ignore[arg-type]
            InProcessLimiter(),
            nodes=2,
            quota_fail_closed=True,
            monotonic=FakeClock(100.0),
        )
        for primary in primaries
    )
    charges: list[Charge] = [("a", SHARED, 1), ("b", SHARED, 1)]
    for _ in range(2):
        with pytest.raises(LimiterUnavailable):
            sync.acquire_many(charges)

    async def charge() -> None:
        for _ in range(2):  # down, then within the cool-down
            with pytest.raises(LimiterUnavailable, match="fails closed"):
                await on_loop.acquire_many_async(charges)

    run(charge())
    assert on_loop.fallback_count == sync.fallback_count == 2
    assert (primaries[0].sync_calls, primaries[1].async_calls) == (1, 1)
    assert primaries[1].sync_calls == 0


def test_fail_closed_on_unreachable_redis_raises(dead: RedisLimiter) -> None:
    limiter = FallbackLimiter(dead, InProcessLimiter(), nodes=2, quota_fail_closed=True)

    async def charge() -> None:
        try:
            with pytest.raises(LimiterUnavailable):
                await limiter.acquire_many_async([("k", SHARED, 1)])
        finally:
            await limiter.aclose()

    run(charge())
    assert limiter.degraded
    assert limiter.fallback_count == 1


def test_fallback_calls_a_primary_without_async_method_synchronously() -> None:
    primary = SyncOnlyPrimary()
    limiter = FallbackLimiter(
        primary,
        InProcessLimiter(clock=FakeClock(START)),
        nodes=2,
        quota_fail_closed=False,
        monotonic=FakeClock(100.0),
    )
    charges: list[Charge] = [("k", SHARED, 1)] * 3

    async def scenario() -> tuple[list[Decision], list[Decision]]:
        up = await limiter.acquire_many_async(charges)
        primary.down = True
        down = await limiter.acquire_many_async(charges)
        await limiter.aclose()  # a primary without aclose: nothing to do
        return up, down

    up, down = run(scenario())
    assert [(d.allowed, d.limit_remaining) for d in up] == [(True, 3), (True, 2), (True, 1)]
    assert [d.allowed for d in down] == [True, True, False]  # the local share: burst 2
    assert primary.calls == 2  # one round trip each time, the second failing
    assert limiter.degraded
    assert limiter.fallback_count == 3


def test_fallback_of_nothing_asks_nobody_and_bad_costs_ask_nobody() -> None:
    primary = AsyncFlakyPrimary()
    primary.down = False
    limiter = FallbackLimiter(primary, InProcessLimiter(), nodes=2, quota_fail_closed=False)  # type: ignore[arg-type]

    async def charge() -> None:
        assert await limiter.acquire_many_async([]) == []
        with pytest.raises(CostExceedsPlan):
            await limiter.acquire_many_async([("k", SHARED, 1), ("j", SHARED, 5)])
        with pytest.raises(ValueError, match="cost"):
            await limiter.acquire_many_async([("k", SHARED, 0)])

    run(charge())
    assert (primary.async_calls, primary.sync_calls, limiter.fallback_count) == (0, 0, 0)
    assert primary.inner.peek("k", SHARED).quota_remaining == 100


@pytest.mark.redis
def test_fallback_on_healthy_redis_uses_the_full_plan(client: redis.Redis, keys: Keys) -> None:
    key = keys()
    name = f"t-{uuid.uuid4().hex}"
    local = InProcessLimiter()
    limiter = FallbackLimiter(
        RedisLimiter.from_url(with_name(REDIS_URL, name)), local, nodes=4, quota_fail_closed=True
    )

    async def charge() -> list[Decision]:
        try:
            decisions = await limiter.acquire_many_async([(key, SHARED, 1)] * 5)
            assert named_connections(client, name) == 1
            return decisions
        finally:
            await limiter.aclose()

    try:
        decisions = run(charge())
        wait_for_connections(client, name, 0)  # aclose closed the primary's loop client
    finally:
        limiter.close()
    # The full plan (burst 4), not a node's share, and nothing kept locally.
    assert [d.allowed for d in decisions] == [True] * 4 + [False]
    assert decisions[4].reason == "rate"
    assert limiter.fallback_count == 0
    assert not limiter.degraded
    assert len(local) == 0


# ---- charge_each_async ---------------------------------------------------------------------


def outcome_kind(outcome: ChargeOutcome) -> tuple[object, ...]:
    if isinstance(outcome, ProblemError):
        return ("problem", outcome.slug, outcome.status, outcome.headers)
    return ("admitted", outcome)


def test_charge_each_async_with_the_in_process_limiter_is_charge_each() -> None:
    clients = [("c1", "slow")] * 3 + [("c2", "scarce")] * 4 + [("c3", "gone"), ("c1", "slow")]
    sync = InProcessLimiter(clock=FakeClock(START))
    on_loop = InProcessLimiter(clock=FakeClock(START))
    assert not hasattr(on_loop, "acquire_many_async")  # answered synchronously

    expected = charge_each(sync, plan_named, clients)
    outcomes = run(charge_each_async(on_loop, plan_named, clients))

    assert [outcome_kind(o) for o in outcomes] == [outcome_kind(o) for o in expected]
    kinds = [o.slug if isinstance(o, ProblemError) else "admitted" for o in outcomes]
    assert kinds == [
        "admitted",
        "admitted",
        "rate-limited",
        "admitted",
        "admitted",
        "admitted",
        "quota-exceeded",
        "service-unavailable",  # its plan cannot be used: not charged
        "rate-limited",
    ]
    for outcome in outcomes:
        if isinstance(outcome, ProblemError):
            assert outcome.status == (503 if outcome.slug == "service-unavailable" else 429)
            continue
        assert set(outcome) == {"RateLimit-Policy", "RateLimit"}
    first, refused = outcomes[0], outcomes[2]
    assert isinstance(first, dict)
    assert first["RateLimit"].startswith('"burst";r=1;t=100, "daily";r=999;')
    assert first["RateLimit-Policy"] == '"burst";q=2;w=200, "daily";q=1000;w=86400'
    assert isinstance(refused, ProblemError)
    assert refused.headers["Retry-After"] == "100"
    assert set(refused.headers) == {"RateLimit-Policy", "RateLimit", "Retry-After"}
    assert len(on_loop) == 2  # c3 charged nothing


class CountingAsyncLimiter:
    """A limiter answering on the loop only (its synchronous form must not be used)."""

    def __init__(self) -> None:
        self.inner = InProcessLimiter(clock=FakeClock(START))
        self.calls = 0
        self.down = False

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        raise AssertionError("the synchronous call on the event loop")

    async def acquire_many_async(self, charges: Sequence[Charge]) -> list[Decision]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.acquire_many(charges)


def test_charge_each_async_awaits_the_limiters_round_trip() -> None:
    limiter = CountingAsyncLimiter()
    clients = [("c1", "slow")] * 3

    outcomes = run(charge_each_async(limiter, plan_named, clients))  # type: ignore[arg-type]
    expected = charge_each(InProcessLimiter(clock=FakeClock(START)), plan_named, clients)
    assert [outcome_kind(o) for o in outcomes] == [outcome_kind(o) for o in expected]
    assert limiter.calls == 1  # one round trip for the group

    # Nothing to charge (no client, or none with a usable plan): the limiter is not asked.
    assert run(charge_each_async(limiter, plan_named, [])) == []  # type: ignore[arg-type]
    (problem,) = run(charge_each_async(limiter, plan_named, [("c1", "gone")]))  # type: ignore[arg-type]
    assert isinstance(problem, ProblemError)
    assert problem.slug == "service-unavailable"
    assert limiter.calls == 1


def assert_unavailable(outcomes: list[ChargeOutcome], charged: int) -> None:
    assert len(outcomes) == charged
    for outcome in outcomes:
        assert isinstance(outcome, ProblemError)
        assert (outcome.slug, outcome.status) == ("service-unavailable", 503)
        assert outcome.headers == {"Retry-After": "1"}


def test_charge_each_async_when_the_limiter_is_unavailable_is_503() -> None:
    clients = [("c1", "slow"), ("c2", "scarce"), ("c1", "slow")]
    down = CountingAsyncLimiter()
    down.down = True
    outcomes = run(charge_each_async(down, plan_named, clients))  # type: ignore[arg-type]
    assert_unavailable(outcomes, 3)
    # A plan that cannot be used keeps its own problem.
    unusable = run(charge_each_async(down, plan_named, [("c1", "slow"), ("c3", "gone")]))  # type: ignore[arg-type]
    assert_unavailable(unusable[:1], 1)
    assert isinstance(unusable[1], ProblemError)
    assert unusable[1].headers == {}
    assert down.calls == 2
    expected = charge_each(
        FallbackLimiter(
            AsyncFlakyPrimary(),  # type: ignore[arg-type]
            InProcessLimiter(),
            nodes=1,
            quota_fail_closed=True,
        ),
        plan_named,
        clients,
    )
    assert_unavailable(expected, 3)

    # The service's limiter with Redis down and the quota failing closed.
    fail_closed = FallbackLimiter(
        AsyncFlakyPrimary(),  # type: ignore[arg-type]
        InProcessLimiter(),
        nodes=1,
        quota_fail_closed=True,
    )
    assert_unavailable(run(charge_each_async(fail_closed, plan_named, clients)), 3)
    assert fail_closed.fallback_count == 1


def test_charge_each_async_on_unreachable_redis_fails_closed_as_503(dead: RedisLimiter) -> None:
    limiter = FallbackLimiter(dead, InProcessLimiter(), nodes=2, quota_fail_closed=True)

    async def charge() -> list[ChargeOutcome]:
        try:
            return await charge_each_async(limiter, plan_named, [("c1", "slow"), ("c2", "slow")])
        finally:
            await limiter.aclose()

    assert_unavailable(run(charge()), 2)


def comparable(outcome: ChargeOutcome) -> tuple[object, ...]:
    """An outcome but for what depends on the time of day (the daily reset, and so the
    Retry-After of a quota refusal)."""
    if isinstance(outcome, ProblemError):
        kind: tuple[object, ...] = ("problem", outcome.slug, outcome.status)
        headers = dict(outcome.headers)
    else:
        kind, headers = ("admitted",), dict(outcome)
    if "RateLimit" in headers:
        headers["RateLimit"] = re.sub(r'("daily";r=\d+);t=\d+', r"\1", headers["RateLimit"])
    if isinstance(outcome, ProblemError) and outcome.slug == "quota-exceeded":
        del headers["Retry-After"]
    return (*kind, headers)


@pytest.mark.redis
def test_charge_each_async_through_redis_is_charge_each(
    client: redis.Redis, shared: RedisLimiter, keys: Keys
) -> None:
    sync_ids = [keys.client_id() for _ in range(2)]
    async_ids = [keys.client_id() for _ in range(2)]
    names = ["slow", "slow", "scarce", "slow", "scarce", "scarce", "scarce", "gone"]
    owners = [0, 0, 1, 0, 1, 1, 1, 0]
    limiter = FallbackLimiter(shared, InProcessLimiter(), nodes=2, quota_fail_closed=False)

    def clients(ids: list[str]) -> list[tuple[str, str]]:
        return [(ids[o], n) for o, n in zip(owners, names, strict=True)]

    async def charge() -> list[ChargeOutcome]:
        try:
            return await charge_each_async(limiter, plan_named, clients(async_ids))
        finally:
            await limiter.aclose()

    expected = charge_each(limiter, plan_named, clients(sync_ids))
    outcomes = run(charge())

    assert [comparable(o) for o in outcomes] == [comparable(o) for o in expected]
    kinds = [o.slug if isinstance(o, ProblemError) else "admitted" for o in outcomes]
    assert kinds == [
        "admitted",
        "admitted",
        "admitted",
        "rate-limited",
        "admitted",
        "admitted",
        "quota-exceeded",
        "service-unavailable",
    ]
    assert limiter.fallback_count == 0
    assert shared.peek(client_key(async_ids[1]), SCARCE).quota_remaining == 0
    assert shared.peek(client_key(async_ids[0]), SLOW).quota_remaining == 998
