"""Redis limiter: the in-process algorithm (see ``memory.py``) in one atomic Lua script.

One key per client key, a hash ``cs:rl:{<key>}`` with fields ``tat`` (µs), ``day`` (the
Asia/Shanghai day number) and ``used`` (units charged that day). It expires at the later
of its TAT and the end of its Shanghai day, i.e. exactly when it no longer differs from a
fresh key. The braces make it a Redis Cluster hash tag, harmless on a single server.

Time comes from ``redis.call('TIME')`` so that every API node shares one clock. Lua
numbers are doubles; all values are integer microseconds below 2**53 (see ``plans.py``),
so the arithmetic is exact and matches the Python implementation bit for bit.
Needs Redis >= 5 (effects replication by default, so calling TIME before a write is fine).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from service.ratelimit.base import (
    DAY_SECONDS,
    SHANGHAI_UTC_OFFSET_SECONDS,
    Charge,
    LimiterUnavailable,
    check_cost,
)
from service.ratelimit.decision import REASON_CODES, Decision, decision_from_micros
from service.ratelimit.plans import RatePlan

KEY_PREFIX = "cs:rl:"

ERROR_REASON = 3
"""The reason code of a charge whose key could not be read (it holds another type)."""

# load(key) -> the key's state {tat, day, used} (numbers or nil), or nil and the error
#     reply when the key holds something else.
# step(state, interval_us, burst, quota, cost, peek, sec, now_us, utc_offset_s, day_s)
# -> {allowed, reason (0 ok, 1 rate, 2 quota, 3 error), burst remaining, reset_after_us,
#     retry_after_us, quota_remaining, quota_reset_after_s}, all integers; an admitted
#     charge updates ``state`` (marked ``dirty``), which ``store`` then writes.
_GCRA_FUNCTIONS = """
local function load(key)
  local st = redis.pcall('HMGET', key, 'tat', 'day', 'used')
  if st.err then return nil, st end
  return {tat = tonumber(st[1]), day = tonumber(st[2]), used = tonumber(st[3]), dirty = false}
end

local function step(state, interval, burst, quota, cost, peek, sec, now, offset, day_s)
  local today = math.floor((sec + offset) / day_s)
  local day_end = ((today + 1) * day_s - offset) * 1000000
  local cap = burst * interval

  local tat = state.tat
  if tat == nil or tat < now then tat = now end
  local used = 0
  if state.day == today then used = state.used or 0 end

  local need = cost
  if peek then need = 1 end
  local new_tat = tat + need * interval
  local burst_wait = new_tat - cap - now
  local burst_ok = burst_wait <= 0
  local quota_ok = used + need <= quota
  local allowed = burst_ok and quota_ok

  local reason, retry = 0, 0
  if not allowed then
    if not quota_ok then
      reason = 2
      retry = math.max(burst_wait, day_end - now)
    else
      reason = 1
      retry = burst_wait
    end
  end

  if allowed and not peek then
    tat = new_tat
    used = used + cost
    state.tat, state.day, state.used, state.dirty = tat, today, used, true
    state.day_end = day_end
  end

  return {allowed and 1 or 0, reason, math.floor((now + cap - tat) / interval), tat - now,
          retry, quota - used, math.ceil((day_end - now) / 1000000)}
end

local function store(key, state)
  if not state.dirty then return end
  redis.call('HSET', key, 'tat', string.format('%.0f', state.tat), 'day', state.day,
             'used', state.used)
  local expire_ms = math.max(math.ceil(state.tat / 1000), state.day_end / 1000)
  redis.call('PEXPIREAT', key, string.format('%.0f', expire_ms))
end

local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000000 + tonumber(t[2])
"""

# KEYS[1] state hash. ARGV: interval_us, burst, quota, cost, peek (0|1), utc_offset_s, day_s.
# Returns step's list; a key holding something else is an error reply.
GCRA_LUA = (
    _GCRA_FUNCTIONS
    + """
local state, err = load(KEYS[1])
if err then return err end
local out = step(state, tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
                 tonumber(ARGV[4]), ARGV[5] == '1', sec, now, tonumber(ARGV[6]),
                 tonumber(ARGV[7]))
store(KEYS[1], state)
return out
"""
)

# KEYS: one state hash per charge, in order (a key may repeat). ARGV: utc_offset_s, day_s,
# then interval_us, burst, quota, cost for each charge. Returns step's seven integers for
# each charge, one after the other, charged in order at one instant (a repeated key sees
# the charges before it); a key holding something else has reason 3 and the others go on.
# A key is read once and written once, however often it repeats: a group of one client's
# checks costs Redis three commands, not three per check.
GCRA_MANY_LUA = (
    _GCRA_FUNCTIONS
    + """
local offset, day_s = tonumber(ARGV[1]), tonumber(ARGV[2])
local states, order, all = {}, {}, {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local state = states[key]
  if state == nil then
    local err
    state, err = load(key)
    if err then state = false end
    states[key] = state
    order[#order + 1] = key
  end
  local out = {0, 3, 0, 0, 0, 0, 0}
  if state then
    local at = 2 + (i - 1) * 4
    out = step(state, tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]),
               tonumber(ARGV[at + 4]), false, sec, now, offset, day_s)
  end
  for j = 1, 7 do all[#all + 1] = out[j] end
end
for _, key in ipairs(order) do
  if states[key] then store(key, states[key]) end
end
return all
"""
)
REPLY_FIELDS = 7


class RedisLimiter:
    """:class:`~service.ratelimit.base.Limiter` whose state lives in Redis, shared by nodes.

    One EVALSHA round trip per ``acquire``/``peek`` (the script is loaded on the first
    ``NOSCRIPT`` and EVALSHA is retried). A client passed in should have short timeouts
    and no automatic retries; :meth:`from_url` builds one. Every Redis error is raised as
    :class:`~service.ratelimit.base.LimiterUnavailable`. The client is not closed by
    :meth:`close` unless ``close_client`` (it may be shared, e.g. with token revocation).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        prefix: str = KEY_PREFIX,
        close_client: bool = False,
        async_client: Callable[[], redis.asyncio.Redis] | None = None,
    ) -> None:
        self._redis = redis_client
        self._prefix = prefix
        self._close_client = close_client
        self._sha = _sha1(GCRA_LUA)
        self._many_sha = _sha1(GCRA_MANY_LUA)
        self._make_async_client = async_client
        self._async_client: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout: float = 0.25,
        connect_timeout: float = 0.25,
        max_connections: int | None = None,
    ) -> RedisLimiter:
        """A limiter with its own client, configured for a limiter rather than a cache.

        Short timeouts and *no automatic retries*: redis-py (>= 6) by default retries a
        failed command three times with exponential backoff, i.e. seconds per request
        while Redis is down, and a retried EVALSHA whose reply was lost would charge
        twice. Here a failure surfaces at once as ``LimiterUnavailable`` so that
        :class:`~service.ratelimit.fallback.FallbackLimiter` can take over.
        """
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            "max_connections": max_connections,
        }
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **options)

        def async_client() -> redis.asyncio.Redis:
            """The same client for an event loop (made on its first charge)."""
            return redis.asyncio.Redis.from_url(url, retry=AsyncRetry(NoBackoff(), 0), **options)

        return cls(client, close_client=True, async_client=async_client)

    def redis_key(self, key: str) -> str:
        """The Redis key holding ``key``'s state."""
        return f"{self._prefix}{{{key}}}"

    def acquire(self, key: str, plan: RatePlan, cost: int = 1) -> Decision:
        check_cost(plan, cost)
        return self._run(key, plan, cost, peek=False)

    def peek(self, key: str, plan: RatePlan) -> Decision:
        return self._run(key, plan, 1, peek=True)

    def reset(self, key: str) -> None:
        try:
            self._redis.delete(self.redis_key(key))
        except RedisError as exc:
            raise LimiterUnavailable(f"redis: {exc}") from exc

    def close(self) -> None:
        if self._close_client:
            self._redis.close()

    async def aclose(self) -> None:
        """Close the event loop's client (:meth:`acquire_many_each_async`), on that loop."""
        bound, self._async_client = self._async_client, None
        if bound is not None and bound[0] is asyncio.get_running_loop():
            await bound[1].aclose()

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        """Every charge in one round trip, in order, as one atomic script;
        :class:`LimiterUnavailable` if any of them could not be run."""
        return _all_decided(self.acquire_many_each(charges))

    async def acquire_many_async(self, charges: Sequence[Charge]) -> list[Decision]:
        """:meth:`acquire_many` with the round trip awaited (see
        :meth:`acquire_many_each_async`)."""
        return _all_decided(await self.acquire_many_each_async(charges))

    def acquire_many_each(self, charges: Sequence[Charge]) -> list[Decision | LimiterUnavailable]:
        """:meth:`acquire_many`, with a charge that failed on its own (its key holds
        something else) as a :class:`LimiterUnavailable` in its place: the others were
        charged, and a caller falling back must not charge them again. Raises
        :class:`LimiterUnavailable` when Redis could not be asked at all.

        One EVALSHA for all the charges: one command to pack, parse and run, where a
        pipeline of one script per charge cost the group's thread and Redis each about a
        third more per charge (groups of nine: 14-15 against 19-25 µs in the API, 11-18
        against 16-22 µs in Redis). Its keys are those of several clients: on a Redis
        Cluster they would have to share a slot; the service runs against one Redis server.
        """
        if not charges:
            return []
        keys, args = self._many_command(charges)
        reply = self._eval(GCRA_MANY_LUA, self._many_sha, keys, args)
        return _many_outcomes(charges, reply)

    async def acquire_many_each_async(
        self, charges: Sequence[Charge]
    ) -> list[Decision | LimiterUnavailable]:
        """:meth:`acquire_many_each` on the running event loop: the same script and reply,
        with the round trip awaited (a client per event loop, made on first use). A limiter
        built without an asynchronous client makes the synchronous call."""
        if self._make_async_client is None:
            return self.acquire_many_each(charges)
        if not charges:
            return []
        keys, args = self._many_command(charges)
        reply = await self._eval_async(GCRA_MANY_LUA, self._many_sha, keys, args)
        return _many_outcomes(charges, reply)

    def _many_command(self, charges: Sequence[Charge]) -> tuple[list[str], list[int]]:
        """The keys and arguments of the one script that runs ``charges``."""
        for _, plan, cost in charges:
            check_cost(plan, cost)
        keys = [self.redis_key(key) for key, _, _ in charges]
        args: list[int] = [SHANGHAI_UTC_OFFSET_SECONDS, DAY_SECONDS]
        for _, plan, cost in charges:
            args += (plan.emission_interval_us, plan.burst, plan.daily_quota, cost)
        return keys, args

    def _run(self, key: str, plan: RatePlan, cost: int, *, peek: bool) -> Decision:
        reply = self._eval(
            GCRA_LUA, self._sha, [self.redis_key(key)], _script_args(plan, cost, peek)
        )
        return _decision(plan, reply)

    def _eval(self, script: str, sha: str, keys: Sequence[str], args: Sequence[int]) -> Any:
        """EVALSHA; a server without the script (restart, failover, SCRIPT FLUSH) gets it
        loaded once and the call is made again (nothing ran the first time). Every Redis
        error is :class:`LimiterUnavailable`."""
        try:
            try:
                return self._redis.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                # The SHA is checked, so a mismatch cannot loop.
                loaded = self._redis.script_load(script)
                if loaded != sha:
                    raise LimiterUnavailable(f"script SHA mismatch: {loaded!r}") from None
                return self._redis.evalsha(sha, len(keys), *keys, *args)
        except RedisError as exc:
            raise LimiterUnavailable(f"redis: {exc}") from exc

    async def _eval_async(
        self, script: str, sha: str, keys: Sequence[str], args: Sequence[int]
    ) -> Any:
        """:meth:`_eval` on the event loop's client."""
        client = self._client_for_loop()
        try:
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                loaded = await client.script_load(script)
                if loaded != sha:
                    raise LimiterUnavailable(f"script SHA mismatch: {loaded!r}") from None
                return await client.evalsha(sha, len(keys), *keys, *args)
        except RedisError as exc:
            raise LimiterUnavailable(f"redis: {exc}") from exc

    def _client_for_loop(self) -> redis.asyncio.Redis:
        """The running loop's client: an asyncio client's connections belong to the loop
        that opened them (one per worker process when served; a test may run several)."""
        loop = asyncio.get_running_loop()
        bound = self._async_client
        if bound is None or bound[0] is not loop:
            assert self._make_async_client is not None
            bound = self._async_client = (loop, self._make_async_client())
        return bound[1]


def _all_decided(outcomes: Sequence[Decision | LimiterUnavailable]) -> list[Decision]:
    """The decisions, or the first charge's failure raised."""
    decisions: list[Decision] = []
    for outcome in outcomes:
        if isinstance(outcome, LimiterUnavailable):
            raise outcome
        decisions.append(outcome)
    return decisions


def _many_outcomes(charges: Sequence[Charge], reply: Any) -> list[Decision | LimiterUnavailable]:
    """Each charge's decision from the script's reply, or its own failure."""
    if not isinstance(reply, list) or len(reply) != REPLY_FIELDS * len(charges):
        raise LimiterUnavailable("redis: unexpected reply to the charges")
    outcomes: list[Decision | LimiterUnavailable] = []
    for index, (_, plan, _) in enumerate(charges):
        fields = reply[index * REPLY_FIELDS : (index + 1) * REPLY_FIELDS]
        if int(fields[1]) == ERROR_REASON:
            outcomes.append(LimiterUnavailable("redis: the key holds another type"))
        else:
            outcomes.append(_decision(plan, fields))
    return outcomes


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _script_args(plan: RatePlan, cost: int, peek: bool) -> tuple[int, ...]:
    return (
        plan.emission_interval_us,
        plan.burst,
        plan.daily_quota,
        cost,
        1 if peek else 0,
        SHANGHAI_UTC_OFFSET_SECONDS,
        DAY_SECONDS,
    )


def _decision(plan: RatePlan, reply: Any) -> Decision:
    allowed, reason, remaining, reset_us, retry_us, quota_left, quota_reset = (
        int(v) for v in reply
    )
    return decision_from_micros(
        allowed=allowed == 1,
        reason=REASON_CODES[reason],
        limit_remaining=remaining,
        reset_after_us=reset_us,
        retry_after_us=retry_us,
        quota_limit=plan.daily_quota,
        quota_remaining=quota_left,
        quota_reset_after=quota_reset,
    )
