"""RateLimit-Policy / RateLimit structured fields and Retry-After rounding."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from service.ratelimit import (
    Decision,
    InProcessLimiter,
    RatePlan,
    policy_header_value,
    ratelimit_header_value,
    ratelimit_headers,
    retry_after_header,
)

# An sf-list of Items whose bare item is an sf-string and whose parameters are sf-integers.
SF_ITEM = r'"[a-z]+"(?:;[a-z]+=\d{1,15})+'
SF_LIST = re.compile(rf"{SF_ITEM}(?:, {SF_ITEM})*")


def decision(**overrides: object) -> Decision:
    base: dict[str, object] = {
        "allowed": True,
        "reason": "ok",
        "limit_remaining": 19,
        "reset_after": 0.1,
        "retry_after": 0.0,
        "quota_limit": 1000,
        "quota_remaining": 999,
        "quota_reset_after": 3600,
    }
    base.update(overrides)
    return Decision(**base)  # type: ignore[arg-type]


def test_policy_header() -> None:
    plan = RatePlan("std", requests_per_second=10, burst=20, daily_quota=1000)
    value = policy_header_value(plan)
    assert value == '"burst";q=20;w=2, "daily";q=1000;w=86400'
    assert SF_LIST.fullmatch(value)


def test_policy_window_rounds_up() -> None:
    # 10 requests at 3/s take 3.33 s to refill: advertising w=3 would overstate the rate.
    plan = RatePlan("odd", requests_per_second=3, burst=10, daily_quota=5)
    assert policy_header_value(plan).startswith('"burst";q=10;w=4, ')
    slow = RatePlan("slow", requests_per_second=0.5, burst=1, daily_quota=5)
    assert policy_header_value(slow).startswith('"burst";q=1;w=2, ')


def test_ratelimit_header_lists_both_policies() -> None:
    value = ratelimit_header_value(decision())
    assert value == '"burst";r=19;t=1, "daily";r=999;t=3600'
    assert SF_LIST.fullmatch(value)
    full = ratelimit_header_value(decision(limit_remaining=20, reset_after=0.0))
    assert full.startswith('"burst";r=20;t=0, ')


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (0.0, "1"),
        (0.2, "1"),
        (1.0, "1"),
        (1.000001, "2"),
        (59.5, "60"),
        (86399.2, "86400"),
    ],
)
def test_retry_after_rounds_up_and_is_at_least_one(retry_after: float, expected: str) -> None:
    refused = decision(allowed=False, reason="rate", retry_after=retry_after)
    assert retry_after_header(refused) == expected


def test_headers_carry_retry_after_only_when_refused() -> None:
    plan = RatePlan("std", requests_per_second=10, burst=20, daily_quota=1000)
    assert set(ratelimit_headers(plan, decision())) == {"RateLimit-Policy", "RateLimit"}
    refused = ratelimit_headers(
        plan, decision(allowed=False, reason="quota", retry_after=3599.4, quota_remaining=0)
    )
    assert refused["Retry-After"] == "3600"
    assert refused["RateLimit"] == '"burst";r=19;t=1, "daily";r=0;t=3600'


def test_waiting_retry_after_is_never_too_early() -> None:
    now = datetime(2025, 6, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    clock = [now]
    limiter = InProcessLimiter(clock=lambda: clock[0])
    plan = RatePlan("p", requests_per_second=0.3, burst=1, daily_quota=100)
    assert limiter.acquire("k", plan).allowed
    clock[0] += 0.4
    refused = limiter.acquire("k", plan)
    assert 2.9 < refused.retry_after < 3.0  # 3.333 s interval minus 0.4 s
    wait = int(retry_after_header(refused))
    assert wait == 3
    clock[0] += wait
    assert limiter.acquire("k", plan).allowed
