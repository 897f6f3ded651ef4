"""``GET /v1/usage``: a client's plan and what is left of it, from a limiter peek."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.usage import RatePlanView, Usage
from service.ratelimit import Decision, RatePlan

SHANGHAI = ZoneInfo("Asia/Shanghai")


def next_shanghai_midnight(now: datetime) -> datetime:
    """The next midnight in Asia/Shanghai after ``now`` (aware), with its +08:00 offset."""
    local = now.astimezone(SHANGHAI)
    midnight = datetime(local.year, local.month, local.day, tzinfo=SHANGHAI)
    return midnight + timedelta(days=1)


def usage(client_id: str, plan: RatePlan, decision: Decision, now: datetime | None = None) -> Usage:
    return Usage(
        client_id=client_id,
        rate_plan=RatePlanView(
            name=plan.name,
            requests_per_second=plan.requests_per_second,
            burst=plan.burst,
            daily_quota=plan.daily_quota,
        ),
        used_today=max(0, decision.quota_limit - decision.quota_remaining),
        remaining_today=decision.quota_remaining,
        burst_remaining=decision.limit_remaining,
        resets_at=next_shanghai_midnight(now or datetime.now(UTC)),
    )
