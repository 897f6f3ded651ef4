"""Brute-force brakes for the token endpoints.

Every request spends from a per-address budget; failed client authentications
also spend from per-address and per-client-id failure budgets. The failure
budgets refill quickly, so an attacker hammering a client id can delay that
client by seconds, never lock it out for long.

An exhausted client id's failure budget refuses that id's requests before they are
verified. An exhausted address's failure budget does not refuse a client that then
authenticates: many platforms reach the API through one egress address, and one of them
with a wrong secret (or a scanner next to them) must not lock the others out. Their
failures are answered ``429`` instead of ``401`` (:attr:`Verdict.failures_braked`); past
ten times the budget (``FAILURE_CAP_FACTOR``) the address is refused before verification,
as a client id is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from service.ratelimit import Decision, Limiter, LimiterUnavailable, RatePlan
from service.ratelimit.headers import ratelimit_headers

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


FAILURE_CAP_FACTOR = 10
"""An address whose failures exceed ten times its failure budget (300 at once by default,
then 5 a second) is refused before anything is verified, whoever it claims to be: past
the budget itself its failures are only answered 429, and each verification still tells
right from wrong."""


@dataclass(frozen=True)
class Verdict:
    """``headers``: the ``RateLimit-Policy`` and ``RateLimit`` fields of the budget nearest to
    refusing (the refusing one, with ``Retry-After``, when refused), for the response."""

    allowed: bool
    retry_after: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    failures_braked: Verdict | None = None
    """Allowed, but the address's failure budget is spent: if this request fails to
    authenticate too, it is refused with this verdict (``429``) instead of ``401``."""


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
        self._failure_cap_per_address = RatePlan(
            "oauth-fail-address-cap",
            requests_per_second=failures_per_address.requests_per_second * FAILURE_CAP_FACTOR,
            burst=failures_per_address.burst * FAILURE_CAP_FACTOR,
            daily_quota=failures_per_address.daily_quota,
        )

    def admit(self, ip: str | None, client_id: str | None) -> Verdict:
        """Spend one request and check the failure budgets (without spending them)."""
        try:
            spent = [
                (self._per_address, self._limiter.acquire(f"oauth:ip:{ip}", self._per_address))
            ]
            address_failures = self._limiter.peek(f"oauth:fail:ip:{ip}", self._failures_per_address)
            cap = self._failure_cap_per_address
            peeked = [(cap, self._limiter.peek(f"oauth:failcap:ip:{ip}", cap))]
            if client_id:
                spent.append(
                    (
                        REQUESTS_PER_CLIENT,
                        self._limiter.acquire(f"oauth:cid:{client_id}", REQUESTS_PER_CLIENT),
                    )
                )
                peeked.append(
                    (
                        FAILURES_PER_CLIENT,
                        self._limiter.peek(f"oauth:fail:cid:{client_id}", FAILURES_PER_CLIENT),
                    )
                )
        except LimiterUnavailable:
            return Verdict(True)
        refused = [(p, d) for p, d in (*spent, *peeked) if not d.allowed]
        if refused:
            plan, decision = max(refused, key=lambda pair: pair[1].retry_after)
            retry = _retry([d for _, d in refused])
            return Verdict(False, retry, ratelimit_headers(plan, decision))
        braked = None
        if not address_failures.allowed:
            braked = Verdict(
                False,
                _retry([address_failures]),
                ratelimit_headers(self._failures_per_address, address_failures),
            )
        plan, decision = min(spent, key=lambda pair: pair[1].limit_remaining)
        return Verdict(True, 0, ratelimit_headers(plan, decision), braked)

    def failed(self, ip: str | None, client_id: str | None) -> None:
        try:
            self._limiter.acquire(f"oauth:fail:ip:{ip}", self._failures_per_address)
            self._limiter.acquire(f"oauth:failcap:ip:{ip}", self._failure_cap_per_address)
            if client_id:
                self._limiter.acquire(f"oauth:fail:cid:{client_id}", FAILURES_PER_CLIENT)
        except LimiterUnavailable:
            return
