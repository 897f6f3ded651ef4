"""Brute-force brakes for the token endpoints.

Every request spends from a per-address budget; failed client authentications
also spend from per-address and per-client-id failure budgets. The failure
budgets refill quickly, so an attacker hammering a client id can delay that
client by seconds, never lock it out for long.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.ratelimit import Decision, Limiter, LimiterUnavailable, RatePlan

REQUESTS_PER_ADDRESS = RatePlan(
    "oauth-address", requests_per_second=50.0, burst=200, daily_quota=10_000_000
)
REQUESTS_PER_CLIENT = RatePlan(
    "oauth-client", requests_per_second=20.0, burst=100, daily_quota=10_000_000
)
FAILURES_PER_ADDRESS = RatePlan(
    "oauth-fail-address", requests_per_second=0.5, burst=30, daily_quota=10_000_000
)
FAILURES_PER_CLIENT = RatePlan(
    "oauth-fail-client", requests_per_second=1.0, burst=10, daily_quota=10_000_000
)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0


def _retry(decisions: list[Decision]) -> int:
    return max(1, math.ceil(max(d.retry_after for d in decisions)))


class TokenEndpointThrottle:
    def __init__(
        self,
        limiter: Limiter,
        *,
        per_address: RatePlan = REQUESTS_PER_ADDRESS,
        failures_per_address: RatePlan = FAILURES_PER_ADDRESS,
    ) -> None:
        self._limiter = limiter
        self._per_address = per_address
        self._failures_per_address = failures_per_address

    def admit(self, ip: str | None, client_id: str | None) -> Verdict:
        """Spend one request and check the failure budgets (without spending them)."""
        try:
            checks = [self._limiter.acquire(f"oauth:ip:{ip}", self._per_address)]
            checks.append(self._limiter.peek(f"oauth:fail:ip:{ip}", self._failures_per_address))
            if client_id:
                checks.append(self._limiter.acquire(f"oauth:cid:{client_id}", REQUESTS_PER_CLIENT))
                checks.append(
                    self._limiter.peek(f"oauth:fail:cid:{client_id}", FAILURES_PER_CLIENT)
                )
        except LimiterUnavailable:
            return Verdict(True)
        refused = [d for d in checks if not d.allowed]
        return Verdict(False, _retry(refused)) if refused else Verdict(True)

    def failed(self, ip: str | None, client_id: str | None) -> None:
        try:
            self._limiter.acquire(f"oauth:fail:ip:{ip}", self._failures_per_address)
            if client_id:
                self._limiter.acquire(f"oauth:fail:cid:{client_id}", FAILURES_PER_CLIENT)
        except LimiterUnavailable:
            return
