"""Degrade to per-node limits when the shared (Redis) limiter is unreachable."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from service.ratelimit.base import Charge, Limiter, LimiterUnavailable, check_cost
from service.ratelimit.decision import Decision
from service.ratelimit.memory import InProcessLimiter
from service.ratelimit.plans import RatePlan


class FallbackLimiter:
    """Ask ``primary``; while it is down, apply this node's share of the plan locally.

    With ``nodes`` API nodes each applies ``rate/nodes`` and ``burst//nodes`` (at least 1),
    so the cluster as a whole stays near the plan. The daily quota is either shared the
    same way (``quota//nodes``, at least 1 unless the quota is 0) or, with
    ``quota_fail_closed``, not served at all: :class:`LimiterUnavailable` is raised for the
    app to answer 503, since a local count cannot guarantee a contractual daily quota.

    After a failure Redis is not asked again for ``cooldown`` seconds (monotonic clock);
    then exactly one request probes it while the others keep using the local limits, so a
    hung Redis costs one socket timeout per cool-down, not one per request.

    ``fallback_count`` (and ``on_fallback``, called once per occurrence) counts the
    requests Redis did not answer, whether served locally or refused with 503.
    """

    def __init__(
        self,
        primary: Limiter,
        local: InProcessLimiter,
        nodes: int,
        quota_fail_closed: bool,
        *,
        on_fallback: Callable[[], None] | None = None,
        cooldown: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if nodes < 1:
            raise ValueError("nodes must be >= 1")
        self._primary = primary
        self._local = local
        self._nodes = nodes
        self._quota_fail_closed = quota_fail_closed
        self._on_fallback = on_fallback
        self._cooldown = cooldown
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # None: primary believed healthy
        self._local_plans: dict[RatePlan, RatePlan] = {}
        self.fallback_count = 0

    @property
    def degraded(self) -> bool:
        """Whether the last word from the primary was a failure."""
        with self._lock:
            return self._retry_at is not None

    def local_plan(self, plan: RatePlan) -> RatePlan:
        """This node's share of ``plan`` while the primary is down."""
        local = self._local_plans.get(plan)
        if local is None:
            n = self._nodes
            quota = plan.daily_quota
            local = RatePlan(
                name=plan.name,
                requests_per_second=plan.requests_per_second / n,
                burst=max(1, plan.burst // n),
                daily_quota=max(1, quota // n) if quota > 0 else 0,
            )
            if len(self._local_plans) < 1024:  # plans are few; never grow unbounded
                self._local_plans[plan] = local
        return local

    def acquire(self, key: str, plan: RatePlan, cost: int = 1) -> Decision:
        check_cost(plan, cost)
        if self._should_try_primary():
            try:
                decision = self._primary.acquire(key, plan, cost)
            except LimiterUnavailable:
                self._mark_down()
            else:
                self._mark_up()
                return decision
        return self._acquire_locally(key, plan, cost)

    def _acquire_locally(self, key: str, plan: RatePlan, cost: int) -> Decision:
        """The charge against this node's share of the plan (the shared limiter failed)."""
        self._count_fallback()
        local = self.local_plan(plan)
        if cost > local.burst:
            # Fits the plan but not this node's share of it: refuse until the shared
            # limiter is back (it is probed again after the cool-down).
            current = self._local.peek(key, local)
            if current.reason == "quota":
                return current
            return replace(
                current,
                allowed=False,
                reason="rate",
                retry_after=max(current.reset_after, self._cooldown),
            )
        return self._local.acquire(key, local, cost)

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        """All charges from the shared limiter in one round trip, or each from the local
        share while it is down (as :meth:`acquire` would)."""
        if self._ask_primary_for(charges):
            each = getattr(self._primary, "acquire_many_each", None)
            try:
                outcomes = each(charges) if each else self._primary.acquire_many(charges)
            except LimiterUnavailable:
                self._mark_down()
            else:
                return self._answered(charges, outcomes)
        return [self.acquire(key, plan, cost) for key, plan, cost in charges]

    async def acquire_many_async(self, charges: Sequence[Charge]) -> list[Decision]:
        """:meth:`acquire_many` with the shared limiter's round trip awaited on the running
        event loop (when it can: ``acquire_many_each_async``), the same decisions."""
        each = getattr(self._primary, "acquire_many_each_async", None)
        if each is None:
            return self.acquire_many(charges)
        if self._ask_primary_for(charges):
            try:
                outcomes = await each(charges)
            except LimiterUnavailable:
                self._mark_down()
            else:
                return self._answered(charges, outcomes)
        # Locally, without :meth:`acquire`'s probe of the shared limiter per charge: that
        # would be a blocking round trip on the loop (the next group probes, awaited).
        return [self._acquire_locally(key, plan, cost) for key, plan, cost in charges]

    def _ask_primary_for(self, charges: Sequence[Charge]) -> bool:
        """Whether to send ``charges`` to the shared limiter (never with nothing to ask:
        no probe either); a cost no plan admits is refused first."""
        for _, plan, cost in charges:
            check_cost(plan, cost)
        return bool(charges) and self._should_try_primary()

    def _answered(
        self, charges: Sequence[Charge], outcomes: Sequence[Decision | LimiterUnavailable]
    ) -> list[Decision]:
        """The shared limiter answered: a charge it refused to run (an error on its key
        alone) goes to the local share; the others were charged there, and only there."""
        self._mark_up()
        return [
            self._acquire_locally(key, plan, cost)
            if isinstance(outcome, LimiterUnavailable)
            else outcome
            for (key, plan, cost), outcome in zip(charges, outcomes, strict=True)
        ]

    def peek(self, key: str, plan: RatePlan) -> Decision:
        if self._should_try_primary():
            try:
                decision = self._primary.peek(key, plan)
            except LimiterUnavailable:
                self._mark_down()
            else:
                self._mark_up()
                return decision
        self._count_fallback()
        return self._local.peek(key, self.local_plan(plan))

    def reset(self, key: str) -> None:
        self._local.reset(key)
        self._primary.reset(key)

    def close(self) -> None:
        try:
            self._primary.close()
        finally:
            self._local.close()

    async def aclose(self) -> None:
        """Release what the shared limiter holds on the running event loop."""
        aclose = getattr(self._primary, "aclose", None)
        if aclose is not None:
            await aclose()

    def _should_try_primary(self) -> bool:
        with self._lock:
            if self._retry_at is None:
                return True
            now = self._monotonic()
            if now < self._retry_at:
                return False
            # This caller probes; the others stay local for one more cool-down.
            self._retry_at = now + self._cooldown
            return True

    def _mark_down(self) -> None:
        with self._lock:
            self._retry_at = self._monotonic() + self._cooldown

    def _mark_up(self) -> None:
        if self._retry_at is not None:
            with self._lock:
                self._retry_at = None

    def _count_fallback(self) -> None:
        """Count a request the primary did not answer; fail closed if so configured."""
        with self._lock:
            self.fallback_count += 1
        if self._on_fallback is not None:
            self._on_fallback()
        if self._quota_fail_closed:
            raise LimiterUnavailable("shared rate limiter unavailable and quota fails closed")
