"""The limiter interface, its errors, and the calendar the daily quota follows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeAlias

from service.ratelimit.decision import Decision
from service.ratelimit.plans import MICROS, RatePlan

SHANGHAI_UTC_OFFSET_SECONDS = 8 * 3600
"""Asia/Shanghai is UTC+08:00 with no daylight saving time since 1991.

A fixed offset (rather than ``zoneinfo``) lets the Redis Lua script compute the very same
day boundary as Python; a test checks it against the tz database.
"""

DAY_SECONDS = 86_400


class LimiterUnavailable(Exception):
    """The shared limiter state cannot be reached (e.g. Redis is down); answer 503."""


class CostExceedsPlan(ValueError):
    """A single request costs more than the plan's burst: it could never be admitted.

    Raised rather than answered with a refusal because no ``Retry-After`` would be true;
    the caller decides (split the batch, or refuse it as too large for the plan).
    """


Charge: TypeAlias = tuple[str, RatePlan, int]
"""``(key, plan, cost)``: one charge of :meth:`Limiter.acquire_many`."""


class Limiter(Protocol):
    """A rate limiter: a GCRA burst bucket plus a daily quota per key.

    Methods are synchronous; the app calls them from its threadpool.
    """

    def acquire(self, key: str, plan: RatePlan, cost: int = 1) -> Decision:
        """Charge ``cost`` units to ``key`` if both the burst and the quota admit all of them.

        All-or-nothing: a refusal consumes nothing from either limit.
        Raises :class:`CostExceedsPlan` if ``cost > plan.burst``, :class:`ValueError` if
        ``cost < 1``, :class:`LimiterUnavailable` if the shared state is unreachable.
        """
        ...

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        """:meth:`acquire` for each charge, in order, in as few round trips as the backend
        allows; a decision per charge (each all-or-nothing on its own)."""
        ...

    def peek(self, key: str, plan: RatePlan) -> Decision:
        """The current state without consuming anything (``GET /v1/usage``).

        ``allowed``/``reason``/``retry_after`` describe a request of cost 1 made now;
        ``limit_remaining`` and ``quota_remaining`` are what is available now.
        """
        ...

    def reset(self, key: str) -> None:
        """Forget everything about ``key`` (full burst, unused quota)."""
        ...

    def close(self) -> None:
        """Release resources held by the limiter."""
        ...


def check_cost(plan: RatePlan, cost: int) -> None:
    """Reject costs that no limiter state could ever admit, before touching any state."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an integer >= 1, got {cost!r}")
    if cost > plan.burst:
        raise CostExceedsPlan(f"cost {cost} exceeds the burst {plan.burst} of plan {plan.name!r}")


def shanghai_day(now_us: int) -> int:
    """Days since 1970-01-01 in Asia/Shanghai for a Unix time in microseconds."""
    return (now_us // MICROS + SHANGHAI_UTC_OFFSET_SECONDS) // DAY_SECONDS


def shanghai_day_end_us(day: int) -> int:
    """Unix time in microseconds of the midnight that ends Shanghai day ``day``."""
    return ((day + 1) * DAY_SECONDS - SHANGHAI_UTC_OFFSET_SECONDS) * MICROS
