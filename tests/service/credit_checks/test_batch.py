"""``POST /v1/credit-checks/batch``: input order, per-item outcomes, cost, audit."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from schemas.credit_checks import MAX_BATCH_BODY_BYTES, BatchResponse
from schemas.uscc import ALPHABET
from service.models import AuditEvent, CreditCheck
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import ensure_plan, platform, used_today

PATH = "/v1/credit-checks/batch"


def _batch(
    client: TestClient, headers: dict[str, str], codes: list[str], purpose: str = "ONBOARDING"
) -> Any:
    return client.post(
        PATH, json={"purpose": purpose, "items": [{"uscc": c} for c in codes]}, headers=headers
    )


def _wrong_check(code: str) -> str:
    return code[:-1] + next(c for c in ALPHABET if c != code[-1])


def test_mixed_batch_in_input_order(client: TestClient, factory: Factory, db: Any) -> None:
    good = factory.merchant()
    factory.record(good, category="SOCIAL_INSURANCE_ARREARS", severity="GENERAL")
    clean = factory.merchant()
    legacy = _wrong_check(random_uscc())
    factory.merchant(legacy, legacy_code=True)
    unknown = random_uscc()
    codes = [
        unknown,
        good,
        "123",
        clean,
        _wrong_check(random_uscc()),
        "91120101O00000000X",
        legacy,
        good,
    ]
    headers = platform(factory, "credit:check credit:detail")
    response = client.post(
        PATH,
        json={
            "purpose": "PERIODIC_REVIEW",
            "items": [{"uscc": c, "reference": f"r{i}"} for i, c in enumerate(codes)],
        },
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert "ratelimit" in response.headers
    results = BatchResponse.model_validate(response.json()).results
    assert [r.status for r in results] == [404, 200, 422, 200, 422, 422, 200, 200]
    assert [r.uscc for r in results] == codes
    assert [r.problem.reason if r.problem else None for r in results] == [
        None, None, "length", None, "checksum", "charset", None, None,
    ]  # fmt: skip
    assert results[0].problem is not None
    assert results[0].problem.type.endswith("/merchant-not-found")
    assert all((r.check is None) == (r.status != 200) for r in results)
    checks = {i: r.check for i, r in enumerate(results) if r.check}
    assert checks[1].verdict == "CAUTION"
    assert checks[3].verdict == "CLEAR"
    assert checks[1].reference == "r1"
    assert checks[7].reference == "r7"
    assert checks[1].records is not None
    assert len(checks[1].records) == 1
    assert len({c.id for c in checks.values()}) == 4
    # Each check is stored and can be read back exactly as it was in the batch.
    raw_items = response.json()["results"]
    for i, item in checks.items():
        stored = client.get(f"/v1/credit-checks/{item.id}", headers=headers)
        assert stored.json() == raw_items[i]["check"]
        assert db.get(CreditCheck, item.id).purpose == "PERIODIC_REVIEW"
    # Valid items cost one each, unknown included; malformed ones cost nothing.
    assert used_today(client, headers) == 5
    # One event for the request, one per checked item (the merchant access log sees them).
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
    ).all()
    batch = [e for e in events if e.action == "credit_check.batch"]
    items = [e for e in events if e.action == "credit_check.create"]
    assert len(batch) == 1
    assert batch[0].details["items"] == 8
    assert (
        batch[0].details["checked"],
        batch[0].details["not_found"],
        batch[0].details["invalid"],
    ) == (4, 1, 3)
    assert sorted((e.uscc, e.status) for e in items) == sorted(
        [(unknown, 404), (good, 200), (clean, 200), (legacy, 200), (good, 200)]
    )
    assert all(e.purpose == "PERIODIC_REVIEW" for e in items)
    assert {e.target_id for e in items if e.status == 200} == {c.id for c in checks.values()}


def test_item_count_bounds(client: TestClient, factory: Factory) -> None:
    headers = platform(factory)
    code = random_uscc()
    assert _batch(client, headers, [code] * 1001).status_code == 422
    assert _batch(client, headers, []).status_code == 422
    assert used_today(client, headers) == 0


def test_full_batch_of_1000(client: TestClient, factory: Factory) -> None:
    codes = [factory.merchant() for _ in range(3)]
    headers = platform(factory)
    response = _batch(client, headers, [codes[i % 3] for i in range(1000)])
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == [200] * 1000
    assert used_today(client, headers) == 1000


def test_purpose_is_checked_once_for_the_whole_batch(client: TestClient, factory: Factory) -> None:
    headers = platform(factory, purposes=["ONBOARDING"])
    response = _batch(client, headers, [factory.merchant(), "123"], purpose="TRANSACTION_RISK")
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/purpose-not-allowed")
    assert used_today(client, headers) == 0


def test_blank_and_long_items_are_answered_each(client: TestClient, factory: Factory) -> None:
    """A blank or over-long code is its item's ``invalid-uscc`` (``length``); the request
    is not refused for it, and the items around it are checked."""
    good = factory.merchant()
    headers = platform(factory)
    response = _batch(client, headers, ["", good, "   ", "9" * 65, good])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [422, 200, 422, 422, 200]
    assert [r["problem"]["reason"] for r in results if r["status"] == 422] == ["length"] * 3
    assert used_today(client, headers) == 2


def test_all_malformed_costs_nothing(client: TestClient, factory: Factory) -> None:
    headers = platform(factory)
    response = _batch(client, headers, ["1", "I" * 18])
    assert [r["status"] for r in response.json()["results"]] == [422, 422]
    assert used_today(client, headers) == 0


def test_quota_refuses_the_whole_batch(client: TestClient, factory: Factory, db: Any) -> None:
    plan = ensure_plan(factory, "test-quota-5", rate=1000.0, burst=1000, quota=5)
    headers = platform(factory, plan=plan)
    code = factory.merchant()
    refused = _batch(client, headers, [code] * 6 + ["bad"])
    assert refused.status_code == 429
    assert refused.json()["type"].endswith("/problems/quota-exceeded")
    assert int(refused.headers["retry-after"]) >= 1
    assert used_today(client, headers) == 0
    admitted = _batch(client, headers, [code] * 5 + ["bad"])
    assert admitted.status_code == 200
    assert used_today(client, headers) == 5


def test_a_batch_takes_one_burst_unit_per_started_hundred_items(
    client: TestClient, factory: Factory
) -> None:
    # 0.001/s: the bucket does not refill during the test.
    plan = ensure_plan(factory, "test-burst-5", rate=0.001, burst=5, quota=1000)
    headers = platform(factory, plan=plan)
    code = factory.merchant()
    first = _batch(client, headers, [code] * 12)
    assert first.status_code == 200
    assert '"burst";r=4;' in first.headers["ratelimit"]  # one unit of the bucket
    assert '"daily";r=988;' in first.headers["ratelimit"]  # twelve checks of the quota
    second = _batch(client, headers, [code] * 401)  # five units: more than the four left
    assert second.status_code == 429
    assert second.json()["type"].endswith("/problems/rate-limited")
    assert used_today(client, headers) == 12
    third = _batch(client, headers, [code] * 400)  # four units: all that is left
    assert third.status_code == 200
    assert '"burst";r=0;' in third.headers["ratelimit"]
    assert used_today(client, headers) == 412


def test_the_largest_valid_batch_fits_however_the_client_escapes_it(
    client: TestClient, factory: Factory
) -> None:
    """1000 items with 200-character Chinese references, every character escaped as
    Python's json.dumps does: 1.25 MB, over the 1 MiB other bodies are held to."""
    headers = platform(
        factory,
        plan=ensure_plan(factory, "test-roomy-batch", rate=1000.0, burst=1000, quota=100_000),
    )
    code = factory.merchant()
    items = [{"uscc": code, "reference": "审" * 200} for _ in range(1000)]
    body = json.dumps({"purpose": "ONBOARDING", "items": items}).encode()
    assert len(body) > 1_048_576
    response = client.post(
        PATH, content=body, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["results"]) == 1000
    too_big = client.post(
        PATH,
        content=b" " * (MAX_BATCH_BODY_BYTES + 1),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert too_big.status_code == 413
