"""Rate plans by name, read from the database and cached for about a second.

Every limited request needs its client's plan; reading the row each time would add a
query to the hot path. A plan changed with ``PUT /v1/admin/rate-plans/{name}`` is in
force on every node within :data:`DEFAULT_TTL_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from service.problems import ProblemError
from service.ratelimit import RatePlan
from service.state import state_singleton
from service.usage import repository

DEFAULT_TTL_SECONDS = 1.0
MAX_PLANS = 1024  # plans are few; never grow without bound


class RatePlanCache:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._ttl = ttl
        self._clock = clock
        self._plans: dict[str, tuple[RatePlan, float]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> RatePlan:
        """The plan called ``name``; 503 if it is missing or unusable (never unlimited)."""
        cached = self._plans.get(name)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        with self._session_factory() as session:
            row = repository.get_plan(session, name)
            if row is None:
                raise ProblemError("service-unavailable")
            try:
                plan = RatePlan(
                    name=row.name,
                    requests_per_second=row.requests_per_second,
                    burst=row.burst,
                    daily_quota=row.daily_quota,
                )
            except ValueError:
                raise ProblemError("service-unavailable") from None
        with self._lock:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[name] = (plan, self._clock() + self._ttl)
        return plan

    def is_fresh(self, name: str) -> bool:
        """Whether :meth:`get` would answer ``name`` without asking the database."""
        cached = self._plans.get(name)
        return cached is not None and self._clock() < cached[1]

    def invalidate(self) -> None:
        with self._lock:
            self._plans.clear()


def rate_plans(state: Any) -> RatePlanCache:
    """The app's cache (``app.state.rate_plan_cache``), created on first use."""
    return state_singleton(state, "rate_plan_cache", lambda: RatePlanCache(state.sessionmaker))
