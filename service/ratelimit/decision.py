"""The outcome of asking a limiter for a request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.ratelimit.plans import MICROS

Reason = Literal["ok", "rate", "quota"]


@dataclass(frozen=True)
class Decision:
    """What a limiter decided, and the numbers the response headers are made of.

    ``reason`` is ``"quota"`` whenever the daily quota refuses the request, even if the
    burst would have refused it too: waiting for the bucket would not help then.
    ``limit_remaining`` is the number of whole burst tokens left after this request (after
    nothing, when refused or peeked). ``reset_after`` is the seconds until the burst bucket
    is full again, ``retry_after`` the seconds until this very request could be admitted
    (0 when admitted; for a quota refusal, the seconds to the next Shanghai midnight).
    ``quota_reset_after`` is the whole seconds to the next midnight in Asia/Shanghai,
    rounded up.
    """

    allowed: bool
    reason: Reason
    limit_remaining: int
    reset_after: float
    retry_after: float
    quota_limit: int
    quota_remaining: int
    quota_reset_after: int


REASON_CODES: tuple[Reason, Reason, Reason] = ("ok", "rate", "quota")
"""Index = the small integer the Redis script returns for a reason."""


def decision_from_micros(
    *,
    allowed: bool,
    reason: Reason,
    limit_remaining: int,
    reset_after_us: int,
    retry_after_us: int,
    quota_limit: int,
    quota_remaining: int,
    quota_reset_after: int,
) -> Decision:
    """Build a :class:`Decision` from the integer microseconds both backends compute in."""
    return Decision(
        allowed=allowed,
        reason=reason,
        limit_remaining=max(0, limit_remaining),
        reset_after=max(0, reset_after_us) / MICROS,
        retry_after=0.0 if allowed else max(0, retry_after_us) / MICROS,
        quota_limit=quota_limit,
        quota_remaining=max(0, quota_remaining),
        quota_reset_after=quota_reset_after,
    )
