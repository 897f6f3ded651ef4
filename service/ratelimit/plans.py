"""Rate plans: a sustained rate, a burst and a daily quota per client."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

MICROS = 1_000_000
"""Microseconds per second: every limiter computes in integer microseconds."""

# Largest burst * emission interval accepted, in microseconds (about 31 years). The Redis
# backend does its arithmetic in Lua doubles, exact only below 2**53 (~9.0e15); a Unix time
# in microseconds is ~1.8e15, so keeping the tolerance under 1e15 keeps every sum exact.
_MAX_TOLERANCE_US = 10**15


@dataclass(frozen=True)
class RatePlan:
    """A client's limits.

    ``requests_per_second`` is the sustained rate the burst bucket refills at, ``burst`` the
    number of requests a rested client may make at once, ``daily_quota`` the number of
    requests admitted per calendar day in Asia/Shanghai (0 admits nothing).
    """

    name: str
    requests_per_second: float
    burst: int
    daily_quota: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate plan needs a name")
        rate = self.requests_per_second
        if not (math.isfinite(rate) and 0 < rate <= MICROS) or not math.isfinite(MICROS / rate):
            raise ValueError(f"requests_per_second must be in (0, {MICROS}], got {rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an integer >= 1, got {self.burst!r}")
        if (
            isinstance(self.daily_quota, bool)
            or not isinstance(self.daily_quota, int)
            or self.daily_quota < 0
        ):
            raise ValueError(f"daily_quota must be an integer >= 0, got {self.daily_quota!r}")
        if self.burst * self.emission_interval_us > _MAX_TOLERANCE_US:
            raise ValueError("burst / requests_per_second is too large")

    @cached_property
    def emission_interval_us(self) -> int:
        """GCRA emission interval T = 1/rate, rounded to whole microseconds (at least 1).

        Rounding T (rather than working in float seconds) makes the arithmetic exact and
        identical in Python and in the Redis Lua script. The error is at most half a
        microsecond per interval, i.e. ``rate / 2e6`` relative: 1.5e-6 at 3/s, 0.05% at
        1000/s; only rates of many thousands per second are visibly off (300000/s
        becomes 333333/s). Cached: it is on the hot path and the plan is immutable.
        """
        return max(1, round(MICROS / self.requests_per_second))

    @property
    def window_seconds(self) -> int:
        """Seconds an empty burst bucket takes to refill, rounded up (at least 1).

        Advertised as the ``w`` of the burst policy: ``burst`` requests per this window
        never exceeds the plan, whatever the phase.
        """
        return max(1, -(-self.burst * self.emission_interval_us // MICROS))
