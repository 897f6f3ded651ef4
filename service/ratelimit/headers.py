"""``RateLimit-Policy``, ``RateLimit`` and ``Retry-After`` response header fields.

Follows draft-ietf-httpapi-ratelimit-headers-10 (September 2025), whose field syntax is
the one introduced in -08: both fields are Structured Field Lists (RFC 9651) of Items, each
Item a String naming a policy, with Integer parameters. In ``RateLimit-Policy``: ``q``
(quota units) and ``w`` (window, seconds). In ``RateLimit``: ``r`` (remaining units) and
``t`` (seconds until the quota is restored). Earlier drafts' ``RateLimit-Limit`` /
``-Remaining`` / ``-Reset`` fields are not sent.

Two policies are advertised: ``"burst"`` (the GCRA bucket, ``w`` = seconds for an empty
bucket to refill, so ``q`` per ``w`` never exceeds the plan) and ``"daily"`` (the quota,
``w=86400``, restored at midnight Asia/Shanghai). ``RateLimit`` always lists both, so a
client sees whichever is tighter. Times are rounded up: a client that waits what the
headers say is never early.
"""

from __future__ import annotations

import math

from service.ratelimit.base import DAY_SECONDS
from service.ratelimit.decision import Decision
from service.ratelimit.plans import RatePlan

BURST_POLICY = "burst"
DAILY_POLICY = "daily"


def _ceil_seconds(seconds: float) -> int:
    return max(0, math.ceil(seconds))


def policy_header_value(plan: RatePlan) -> str:
    """The ``RateLimit-Policy`` value for ``plan``."""
    return (
        f'"{BURST_POLICY}";q={plan.burst};w={plan.window_seconds}, '
        f'"{DAILY_POLICY}";q={plan.daily_quota};w={DAY_SECONDS}'
    )


def ratelimit_header_value(decision: Decision) -> str:
    """The ``RateLimit`` value: what is left of each policy after ``decision``."""
    return (
        f'"{BURST_POLICY}";r={decision.limit_remaining};t={_ceil_seconds(decision.reset_after)}, '
        f'"{DAILY_POLICY}";r={decision.quota_remaining};t={decision.quota_reset_after}'
    )


def retry_after_header(decision: Decision) -> str:
    """``Retry-After`` delay-seconds: the retry delay rounded up, and at least 1."""
    return str(max(1, math.ceil(decision.retry_after)))


def ratelimit_headers(plan: RatePlan, decision: Decision) -> dict[str, str]:
    """All rate-limit response headers for ``decision``; ``Retry-After`` only when refused."""
    headers = {
        "RateLimit-Policy": policy_header_value(plan),
        "RateLimit": ratelimit_header_value(decision),
    }
    if not decision.allowed:
        headers["Retry-After"] = retry_after_header(decision)
    return headers
