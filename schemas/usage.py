"""What a client may still do today under its rate plan."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RatePlanView(BaseModel):
    name: str
    requests_per_second: float
    burst: int
    daily_quota: int


class Usage(BaseModel):
    client_id: str
    rate_plan: RatePlanView
    used_today: int = Field(description="Checks charged today (Asia/Shanghai calendar day)")
    remaining_today: int
    burst_remaining: int = Field(description="Checks that may be made at once right now")
    resets_at: datetime = Field(
        description="When the daily quota is restored: the next midnight in Asia/Shanghai"
    )
