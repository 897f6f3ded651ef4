"""Charging a client's rate plan: the limiter's decisions as response headers or problems.

Framework-free: routes get a :class:`RateGate` from ``service.ratelimit.dependency`` and
call :meth:`RateGate.charge` only once the request has passed validation, so that an
invalid request costs nothing (which is why this is not a middleware); a group of single
checks is charged with :func:`charge_each`. A refusal is ``429`` with ``Retry-After`` and the rate-limit
headers; a limiter that cannot be reached is ``503 service-unavailable``. The headers of
an admitted request are returned for the route to put on its response.

Costing rule for batches. A batch of ``n`` checks costs ``n`` units of the daily quota
(each item is a check) but only one unit of the burst bucket per started hundred items
(``ceil(n / BATCH_ITEMS_PER_BURST_UNIT)``: 10 for a full batch of 1000): the bucket limits
how fast a client sends requests, and a batch is one request, served by a handful of
set-based queries. So a client that has just made a few single checks can still send a
full batch, and one that sends batches back to back is held to about
``requests_per_second / 10`` full batches a second. On a plan whose burst is smaller
than a batch's units, the batch needs the full bucket and drains it. This is done with
the limiter's own atomic ``acquire``, charging ``n`` units against a plan whose emission
interval makes them take exactly those burst units' time, while the quota counts ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from service.problems import ProblemError
from service.ratelimit.base import Charge, CostExceedsPlan, Limiter, LimiterUnavailable
from service.ratelimit.decision import Decision
from service.ratelimit.headers import ratelimit_headers
from service.ratelimit.plans import MICROS, RatePlan

UNAVAILABLE_RETRY_AFTER = "1"


def client_key(client_id: str) -> str:
    """The limiter key of a client (shared by every node)."""
    return f"client:{client_id}"


BATCH_ITEMS_PER_BURST_UNIT = 100


def burst_units(cost: int) -> int:
    """The burst units ``cost`` checks of one request take (see the module docstring)."""
    return max(1, -(-cost // BATCH_ITEMS_PER_BURST_UNIT))


def charged_plan(plan: RatePlan, cost: int) -> RatePlan:
    """The plan to charge ``cost`` units against (see the module docstring): ``cost`` of
    its units take ``min(burst_units(cost), burst)`` units of ``plan``'s bucket."""
    units = min(burst_units(cost), plan.burst)
    if cost == units:
        return plan
    rate = min(float(MICROS), plan.requests_per_second * cost / units)
    capacity = -(-plan.burst * cost // units)  # the same bucket, in the smaller units
    return RatePlan(
        name=plan.name, requests_per_second=rate, burst=capacity, daily_quota=plan.daily_quota
    )


def _in_plan_units(decision: Decision, plan: RatePlan, charged: RatePlan) -> Decision:
    """Report burst tokens in units of the real plan, not of the derived one."""
    if charged is plan:
        return decision
    # In the rates' ratio, not the emission intervals' (each rounded to a microsecond, so
    # a derived plan's units would add up to a hair under whole units of the real one).
    ratio = plan.requests_per_second / charged.requests_per_second
    remaining = math.floor(decision.limit_remaining * ratio + 1e-9)
    return replace(decision, limit_remaining=min(plan.burst, remaining))


def unavailable() -> ProblemError:
    return ProblemError("service-unavailable", headers={"Retry-After": UNAVAILABLE_RETRY_AFTER})


def admitted(plan: RatePlan, charged: RatePlan, decision: Decision) -> dict[str, str]:
    """The response headers of an admitted charge; ``ProblemError`` (429) if refused."""
    headers = ratelimit_headers(plan, _in_plan_units(decision, plan, charged))
    if not decision.allowed:
        slug = "quota-exceeded" if decision.reason == "quota" else "rate-limited"
        raise ProblemError(slug, headers=headers)
    return headers


ChargeOutcome = dict[str, str] | ProblemError
"""The headers of an admitted charge, or the problem that refused it."""


def charge_each(
    limiter: Limiter, plans: Callable[[str], RatePlan], clients: Sequence[tuple[str, str]]
) -> list[ChargeOutcome]:
    """One check charged to each ``(client_id, plan name)``, in order, with one call to the
    limiter (one Redis round trip): what :meth:`RateGate.charge` answers for each."""
    each = _EachCharge(plans, clients)
    if not each.charges:
        return each.outcomes
    try:
        decisions = limiter.acquire_many(each.charges)
    except LimiterUnavailable:
        return each.unavailable()
    return each.decided(decisions)


async def charge_each_async(
    limiter: Limiter, plans: Callable[[str], RatePlan], clients: Sequence[tuple[str, str]]
) -> list[ChargeOutcome]:
    """:func:`charge_each`, with the limiter's round trip awaited on the running event
    loop when the limiter can (``acquire_many_async``; an in-process limiter answers at
    once)."""
    each = _EachCharge(plans, clients)
    if not each.charges:
        return each.outcomes
    acquire_many_async = getattr(limiter, "acquire_many_async", None)
    try:
        if acquire_many_async is None:
            decisions = limiter.acquire_many(each.charges)
        else:
            decisions = await acquire_many_async(each.charges)
    except LimiterUnavailable:
        return each.unavailable()
    return each.decided(decisions)


class _EachCharge:
    """The limiter's charges for :func:`charge_each`, and its outcomes once decided."""

    def __init__(self, plans: Callable[[str], RatePlan], clients: Sequence[tuple[str, str]]):
        self.outcomes: list[ChargeOutcome] = [{} for _ in clients]
        self.charged: list[tuple[int, RatePlan]] = []
        self.charges: list[Charge] = []
        for index, (client_id, plan_name) in enumerate(clients):
            try:
                plan = plans(plan_name)
            except ProblemError as problem:  # a stored plan that cannot be used (503)
                self.outcomes[index] = problem
                continue
            self.charged.append((index, plan))
            self.charges.append((client_key(client_id), plan, 1))

    def unavailable(self) -> list[ChargeOutcome]:
        for index, _ in self.charged:
            self.outcomes[index] = unavailable()
        return self.outcomes

    def decided(self, decisions: Sequence[Decision]) -> list[ChargeOutcome]:
        for (index, plan), decision in zip(self.charged, decisions, strict=True):
            try:
                self.outcomes[index] = admitted(plan, plan, decision)
            except ProblemError as refusal:
                self.outcomes[index] = refusal
        return self.outcomes


@dataclass(frozen=True, slots=True)
class RateGate:
    """One client's access to its rate plan for the current request."""

    limiter: Limiter
    plans: Callable[[str], RatePlan]
    key: str
    plan_name: str

    def plan(self) -> RatePlan:
        return self.plans(self.plan_name)

    def charge(self, cost: int = 1) -> dict[str, str]:
        """Charge ``cost`` checks (all or nothing); the headers for the response.

        Raises ``ProblemError`` ``rate-limited``/``quota-exceeded`` (429) when refused,
        ``service-unavailable`` (503) when the limiter cannot be reached.
        """
        plan = self.plan()
        charged = charged_plan(plan, cost)
        try:
            decision = self.limiter.acquire(self.key, charged, cost)
        except (LimiterUnavailable, CostExceedsPlan):
            # CostExceedsPlan cannot happen with charged_plan; never admit on a doubt.
            raise unavailable() from None
        return admitted(plan, charged, decision)

    def current_headers(self) -> dict[str, str]:
        """The client's rate-limit headers as they stand, charging nothing, for a refusal
        that costs nothing (every response of a rate-limited endpoint carries them); none
        if the limiter cannot say. Blocking (the limiter, the plan cache): on a thread."""
        try:
            plan, decision = self.peek()
        except ProblemError:
            return {}
        return ratelimit_headers(plan, decision)

    def with_current_headers(self, refusal: ProblemError) -> ProblemError:
        """``refusal`` with :meth:`current_headers` added (blocking, as it)."""
        refusal.headers = {**self.current_headers(), **refusal.headers}
        return refusal

    def peek(self) -> tuple[RatePlan, Decision]:
        """The plan and the current state, charging nothing."""
        plan = self.plan()
        try:
            return plan, self.limiter.peek(self.key, plan)
        except LimiterUnavailable:
            raise unavailable() from None
