"""RatePlan validation and the fixed Asia/Shanghai offset the quota day uses."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.ratelimit import RatePlan
from service.ratelimit.base import shanghai_day, shanghai_day_end_us

SHANGHAI = ZoneInfo("Asia/Shanghai")
EPOCH_DATE = datetime(1970, 1, 1).date()


@pytest.mark.parametrize(
    ("rps", "burst", "quota"),
    [
        (0, 1, 1),
        (-1, 1, 1),
        (float("nan"), 1, 1),
        (float("inf"), 1, 1),
        (2_000_000, 1, 1),
        (1, 0, 1),
        (1, 1.5, 1),
        (1, True, 1),
        (1, 1, -1),
        (1e-9, 10, 1),
    ],
)
def test_invalid_plans_are_refused(rps: float, burst: int, quota: int) -> None:
    with pytest.raises(ValueError, match=r"requests_per_second|burst|daily_quota"):
        RatePlan("p", requests_per_second=rps, burst=burst, daily_quota=quota)


def test_emission_interval_is_whole_microseconds() -> None:
    assert RatePlan("a", 3, 1, 0).emission_interval_us == 333_333
    assert RatePlan("b", 0.5, 1, 0).emission_interval_us == 2_000_000
    assert RatePlan("c", 1_000_000, 1, 0).emission_interval_us == 1


def test_plans_are_hashable_values() -> None:
    assert RatePlan("a", 1, 2, 3) == RatePlan("a", 1, 2, 3)
    assert len({RatePlan("a", 1, 2, 3), RatePlan("a", 1, 2, 3)}) == 1


def test_fixed_offset_matches_the_tz_database() -> None:
    rng = random.Random(20250615)
    start = int(datetime(2000, 1, 1, tzinfo=SHANGHAI).timestamp())
    end = int(datetime(2100, 1, 1, tzinfo=SHANGHAI).timestamp())
    for _ in range(2000):
        ts = rng.randrange(start, end)
        local = datetime.fromtimestamp(ts, SHANGHAI)
        assert shanghai_day(ts * 1_000_000) == (local.date() - EPOCH_DATE).days
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
        assert shanghai_day_end_us(shanghai_day(ts * 1_000_000)) == int(midnight.timestamp()) * (
            1_000_000
        )


def test_day_boundary_is_shanghai_midnight() -> None:
    midnight = int(datetime(2025, 1, 1, tzinfo=SHANGHAI).timestamp()) * 1_000_000
    assert shanghai_day(midnight) == shanghai_day(midnight - 1) + 1
    assert shanghai_day_end_us(shanghai_day(midnight - 1)) == midnight
