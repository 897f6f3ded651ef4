"""Rate plans at the credit-check endpoints: 429s with their headers, and batch costing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from service.problems import ProblemError
from service.ratelimit import InProcessLimiter, LimiterUnavailable, RatePlan
from service.ratelimit.base import Charge
from service.ratelimit.charging import RateGate, burst_units, charged_plan
from service.ratelimit.decision import Decision
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import check, ensure_plan, platform, used_today


def test_burst_exceeded_is_429_rate_limited(client: TestClient, factory: Factory) -> None:
    plan = ensure_plan(factory, "test-tiny-burst", rate=0.001, burst=2, quota=1000)
    headers = platform(factory, plan=plan)
    uscc = factory.merchant()
    ok = [check(client, headers, uscc) for _ in range(2)]
    assert [r.status_code for r in ok] == [201, 201]
    assert ok[0].headers["ratelimit-policy"] == '"burst";q=2;w=2000, "daily";q=1000;w=86400'
    assert ok[1].headers["ratelimit"].startswith('"burst";r=0;')
    refused = check(client, headers, uscc)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/problems/rate-limited")
    assert 900 <= int(refused.headers["retry-after"]) <= 1000
    assert refused.headers["ratelimit-policy"] == ok[0].headers["ratelimit-policy"]
    assert '"daily";r=998;' in refused.headers["ratelimit"]
    assert used_today(client, headers) == 2


def test_daily_quota_exhausted_is_429_quota_exceeded(client: TestClient, factory: Factory) -> None:
    plan = ensure_plan(factory, "test-quota-3", rate=1000.0, burst=100, quota=3)
    headers = platform(factory, plan=plan)
    uscc = factory.merchant()
    assert [check(client, headers, uscc).status_code for _ in range(3)] == [201, 201, 201]
    refused = check(client, headers, uscc)
    assert refused.status_code == 429
    assert refused.json()["type"].endswith("/problems/quota-exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    assert '"daily";r=0;' in refused.headers["ratelimit"]
    assert used_today(client, headers) == 3


def test_unknown_merchants_use_up_the_quota_too(client: TestClient, factory: Factory) -> None:
    plan = ensure_plan(factory, "test-quota-3", rate=1000.0, burst=100, quota=3)
    headers = platform(factory, plan=plan)
    assert [check(client, headers, random_uscc()).status_code for _ in range(3)] == [404] * 3
    assert check(client, headers, factory.merchant()).status_code == 429


# ---- the gate, with a clock of our own --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


PLAN = RatePlan("p", requests_per_second=2.0, burst=5, daily_quota=100)


def _gate(limiter: object, plan: RatePlan = PLAN) -> RateGate:
    return RateGate(limiter=limiter, plans=lambda _name: plan, key="client:x", plan_name=plan.name)  # type: ignore[arg-type]


def test_a_batch_takes_one_burst_unit_per_started_hundred_items() -> None:
    clock = Clock()
    gate = _gate(InProcessLimiter(clock), BIG_QUOTA)
    gate.charge(1)  # a single check first: the batch still fits
    headers = gate.charge(100)  # one unit of the bucket, 100 of the quota
    assert headers["RateLimit"].startswith('"burst";r=3;')
    assert '"daily";r=899;' in headers["RateLimit"]
    headers = gate.charge(250)  # three units
    assert headers["RateLimit"].startswith('"burst";r=0;')
    assert '"daily";r=649;' in headers["RateLimit"]
    with pytest.raises(ProblemError) as refused:
        gate.charge(1)
    assert refused.value.slug == "rate-limited"
    clock.now += 0.5  # one unit back (2/s)
    gate.charge(100)


def test_a_batch_needing_more_units_than_the_burst_takes_a_full_bucket() -> None:
    clock = Clock()
    gate = _gate(InProcessLimiter(clock), BIG_QUOTA)
    gate.charge(1)
    with pytest.raises(ProblemError) as refused:
        gate.charge(600)  # six units against a burst of five: only with a full bucket
    assert refused.value.slug == "rate-limited"
    clock.now += 0.5
    headers = gate.charge(600)
    assert headers["RateLimit"].startswith('"burst";r=0;')
    assert '"daily";r=399;' in headers["RateLimit"]


BIG_QUOTA = RatePlan("q", requests_per_second=2.0, burst=5, daily_quota=1000)


def test_charged_plan_keeps_the_bucket_and_the_quota() -> None:
    assert charged_plan(PLAN, 1) is PLAN
    assert burst_units(1) == burst_units(100) == 1
    assert burst_units(101) == 2
    assert burst_units(1000) == 10
    for cost, units in ((5, 1), (250, 3), (1000, 5)):  # 1000 needs 10 units: the whole bucket
        charged = charged_plan(PLAN, cost)
        assert charged.burst >= cost
        assert charged.daily_quota == PLAN.daily_quota
        taken = cost * charged.emission_interval_us
        assert abs(taken - units * PLAN.emission_interval_us) <= cost  # rounding: 1 µs a unit
        capacity = charged.burst * charged.emission_interval_us  # rounded up: within one unit
        assert (
            0
            <= capacity - PLAN.burst * PLAN.emission_interval_us
            <= 2 * charged.emission_interval_us
        )


@dataclass
class DownLimiter:
    def acquire(self, key: str, plan: RatePlan, cost: int = 1) -> Decision:
        raise LimiterUnavailable("down")

    def acquire_many(self, charges: Sequence[Charge]) -> list[Decision]:
        raise LimiterUnavailable("down")

    def peek(self, key: str, plan: RatePlan) -> Decision:
        raise LimiterUnavailable("down")


def test_unreachable_limiter_is_503_never_admitted() -> None:
    gate = _gate(DownLimiter())
    for attempt in (lambda: gate.charge(1), gate.peek):
        with pytest.raises(ProblemError) as refused:
            attempt()
        assert refused.value.slug == "service-unavailable"
        assert refused.value.headers["Retry-After"] == "1"


def test_refusals_that_cost_nothing_still_carry_the_rate_limit_headers(
    client: TestClient, factory: Factory
) -> None:
    """CONTRACT.md: responses to rate-limited endpoints carry RateLimit-Policy and
    RateLimit, refusals included; the state they show is unchanged by the refusal."""
    plan = ensure_plan(factory, "test-headers-on-refusals", rate=1.0, burst=5, quota=100)
    headers = platform(factory, plan=plan, purposes=["ONBOARDING"])
    uscc = factory.merchant()
    assert check(client, headers, uscc).status_code == 201
    refusals = [
        check(client, headers, "91440300708461136"),  # too short: 422 invalid-uscc
        client.post(
            "/v1/credit-checks",
            json={"uscc": uscc, "purpose": "DISPUTE_HANDLING"},  # not the client's: 403
            headers=headers,
        ),
        client.post(
            "/v1/credit-checks/batch",
            json={"purpose": "DISPUTE_HANDLING", "items": [{"uscc": uscc}]},
            headers=headers,
        ),
    ]
    assert [r.status_code for r in refusals] == [422, 403, 403]
    for refused in refusals:
        assert refused.headers["ratelimit-policy"] == '"burst";q=5;w=5, "daily";q=100;w=86400'
        assert '"daily";r=99;' in refused.headers["ratelimit"]  # the one check made, only
    assert used_today(client, headers) == 1
