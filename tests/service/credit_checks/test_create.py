"""``POST /v1/credit-checks``: verdicts, refusals in order, the stored check and its event."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from schemas.credit_checks import CreditCheck as CreditCheckSchema
from schemas.uscc import ALPHABET
from service.models import AuditEvent, CreditCheck, CreditRecord, Merchant
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import check, platform, used_today

RESTRICTED_CODE = "91440300708461136T"
CLEAR_CODE = "914403001922038216"


def _published(factory: Factory) -> None:
    """DOMAIN.md's published codes: one with a SERIOUS dishonest-debtor record, one without."""
    with factory.sessionmaker() as session:
        restricted = session.get(Merchant, RESTRICTED_CODE)
        has_record = session.scalar(
            select(func.count()).where(
                CreditRecord.uscc == RESTRICTED_CODE,
                CreditRecord.category == "DISHONEST_JUDGMENT_DEBTOR",
                CreditRecord.severity == "SERIOUS",
                CreditRecord.status == "ACTIVE",
            )
        )
        clear = session.get(Merchant, CLEAR_CODE)
    if restricted is None:
        factory.merchant(RESTRICTED_CODE, name="示例公司（演示）")
    if not has_record:
        factory.record(RESTRICTED_CODE, category="DISHONEST_JUDGMENT_DEBTOR", severity="SERIOUS")
    if clear is None:
        factory.merchant(CLEAR_CODE, name="示例公司二（演示）")


def test_published_codes(client: TestClient, factory: Factory) -> None:
    _published(factory)
    headers = platform(factory)
    restricted = check(client, headers, RESTRICTED_CODE)
    assert restricted.status_code == 201, restricted.text
    assert restricted.json()["verdict"] == "RESTRICTED"
    assert {
        "category": "DISHONEST_JUDGMENT_DEBTOR",
        "severity": "SERIOUS",
    }.items() <= restricted.json()["reasons"][0].items()
    clear = check(client, headers, CLEAR_CODE)
    assert clear.status_code == 201
    assert clear.json()["verdict"] == "CLEAR"
    assert clear.json()["reasons"] == []


def test_contract_shape_headers_and_storage(client: TestClient, factory: Factory, db: Any) -> None:
    uscc = factory.merchant()
    factory.record(uscc, category="ADMINISTRATIVE_PENALTY", severity="GENERAL")
    headers = platform(factory)
    response = check(client, headers, uscc, reference="order-42")
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    CreditCheckSchema.model_validate(body)  # every member documented, nothing else
    assert body["id"].startswith("chk_")
    assert response.headers["location"] == f"/v1/credit-checks/{body['id']}"
    assert "ratelimit" in response.headers
    assert "ratelimit-policy" in response.headers
    assert body["verdict"] == "CAUTION"
    assert body["reference"] == "order-42"
    assert body["merchant"]["uscc"] == uscc
    assert body["created_at"].endswith("Z")
    assert "records" not in body  # no credit:detail
    row = db.get(CreditCheck, body["id"])
    assert row.body.encode() == response.content
    assert (row.uscc, row.purpose, row.verdict, row.policy_version) == (
        uscc,
        "ONBOARDING",
        "CAUTION",
        body["policy_version"],
    )
    event = db.scalar(
        select(AuditEvent).where(
            AuditEvent.target_id == body["id"], AuditEvent.action == "credit_check.create"
        )
    )
    assert event.action == "credit_check.create"
    assert (event.uscc, event.purpose, event.status, event.outcome) == (
        uscc,
        "ONBOARDING",
        201,
        "success",
    )
    assert event.details["verdict"] == "CAUTION"
    assert event.request_id == response.headers["x-request-id"]
    count = db.scalar(select(func.count()).where(AuditEvent.request_id == event.request_id))
    assert count == 1


@pytest.mark.parametrize("status", ["REVOKED", "DEREGISTERED"])
def test_revoked_or_deregistered_is_restricted(
    client: TestClient, factory: Factory, status: str
) -> None:
    uscc = factory.merchant(registration_status=status)
    body = check(client, platform(factory), uscc).json()
    assert (body["verdict"], body["reasons"]) == ("RESTRICTED", [])
    assert body["merchant"]["registration_status"] == status


def test_records_only_with_detail_and_only_counting_ones(
    client: TestClient, factory: Factory
) -> None:
    uscc = factory.merchant()
    # Created in an order other than the categories', so that sorting by id shows.
    counting = sorted(
        [
            factory.record(uscc, category="HONOR", severity="GENERAL", status="UNDER_OBJECTION"),
            factory.record(uscc, category="COURT_CASE", severity="MINOR"),
        ]
    )
    factory.record(
        uscc, category="DISHONEST_JUDGMENT_DEBTOR", severity="SERIOUS", status="REPAIRED"
    )
    factory.record(
        uscc,
        category="MAJOR_TAX_VIOLATION",
        severity="SERIOUS",
        decided_on=date.today() - timedelta(days=800),
        publicity_until=date.today() - timedelta(days=2),
    )
    plain = check(client, platform(factory), uscc).json()
    assert "records" not in plain
    detailed = check(client, platform(factory, "credit:check credit:detail"), uscc).json()
    assert detailed["verdict"] == plain["verdict"] == "CAUTION"
    assert [r["id"] for r in detailed["records"]] == counting
    record = detailed["records"][0]
    assert set(record) == {
        "id", "category", "severity", "status", "authority", "document_no",
        "decided_on", "publicity_until", "summary",
    }  # fmt: skip


def _bad_codes() -> dict[str, str]:
    valid = random_uscc()
    wrong_check = valid[:-1] + next(c for c in ALPHABET if c != valid[-1])
    return {"length": valid[:-1], "charset": valid[:-1] + "I", "checksum": wrong_check}


@pytest.mark.parametrize("reason", ["length", "charset", "checksum"])
def test_invalid_codes_are_422_with_reason_and_cost_nothing(
    client: TestClient, factory: Factory, reason: str
) -> None:
    headers = platform(factory)
    code = _bad_codes()[reason]
    before = used_today(client, headers)
    response = check(client, headers, code)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/problems/invalid-uscc")
    assert problem["reason"] == reason
    assert code not in response.text  # never echoed
    # The rate-limit state as it stands (nothing charged), whether the code was refused in
    # the route or, for a wrong check character, after the registry lookup in the group.
    assert "ratelimit-policy" in response.headers
    assert "ratelimit" in response.headers
    assert used_today(client, headers) == before


def test_codes_are_trimmed_and_upper_cased(client: TestClient, factory: Factory) -> None:
    uscc = factory.merchant()
    messy = "\u3000 " + uscc.lower() + " "
    response = check(client, platform(factory), messy)
    assert response.status_code == 201, response.text
    assert response.json()["merchant"]["uscc"] == uscc


def test_legacy_code_held_by_the_registry_is_found(client: TestClient, factory: Factory) -> None:
    legacy = _bad_codes()["checksum"]
    factory.merchant(legacy, legacy_code=True)
    headers = platform(factory)
    response = check(client, headers, legacy)
    assert response.status_code == 201, response.text
    assert response.json()["merchant"]["uscc"] == legacy
    assert used_today(client, headers) == 1


def test_unknown_merchant_is_404_counted_and_audited(
    client: TestClient, factory: Factory, db: Any
) -> None:
    headers = platform(factory)
    uscc = random_uscc()
    response = check(client, headers, uscc, purpose="PERIODIC_REVIEW")
    assert response.status_code == 404
    assert response.json()["type"].endswith("/problems/merchant-not-found")
    assert "ratelimit" in response.headers
    assert used_today(client, headers) == 1
    event = db.scalar(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
    )
    assert (event.action, event.uscc, event.purpose, event.status) == (
        "credit_check.create",
        uscc,
        "PERIODIC_REVIEW",
        404,
    )


def test_purpose_not_allowed_is_403_and_costs_nothing(
    client: TestClient, factory: Factory, db: Any
) -> None:
    uscc = factory.merchant()
    headers = platform(factory, purposes=["ONBOARDING"])
    response = check(client, headers, uscc, purpose="DISPUTE_HANDLING")
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/purpose-not-allowed")
    assert used_today(client, headers) == 0
    event = db.scalar(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
    )
    assert (event.outcome, event.purpose) == ("denied", "DISPUTE_HANDLING")
    assert event.uscc == uscc  # the merchant's access log shows the refused attempt
    assert check(client, headers, uscc, purpose="ONBOARDING").status_code == 201


def test_legacy_code_with_a_purpose_not_allowed_is_403_with_rate_headers(
    client: TestClient, factory: Factory
) -> None:
    # Decided in the group (whether the code is a legacy code needs the lookup), and still
    # answered as the route answers a purpose it refuses: nothing charged, state shown.
    legacy = _bad_codes()["checksum"]
    factory.merchant(legacy, legacy_code=True)
    headers = platform(factory, purposes=["ONBOARDING"])
    response = check(client, headers, legacy, purpose="DISPUTE_HANDLING")
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/purpose-not-allowed")
    assert {"ratelimit", "ratelimit-policy"} <= set(response.headers)
    assert used_today(client, headers) == 0


def test_invalid_code_is_refused_before_the_purpose(client: TestClient, factory: Factory) -> None:
    headers = platform(factory, purposes=["ONBOARDING"])
    response = check(client, headers, "123", purpose="DISPUTE_HANDLING")
    assert response.status_code == 422
    assert response.json()["reason"] == "length"


@pytest.mark.parametrize(
    "body",
    [
        {"purpose": "ONBOARDING"},
        {"uscc": "91440300708461136T", "purpose": "GOSSIP"},
        {"uscc": "91440300708461136T", "purpose": "ONBOARDING", "verdict": "CLEAR"},
        {"uscc": "91440300708461136T", "purpose": "ONBOARDING", "reference": "x" * 201},
        {"uscc": "91440300708461136T", "purpose": "ONBOARDING", "consent_ref": "x" * 201},
        {"uscc": "9" * 257, "purpose": "ONBOARDING"},
    ],
    ids=[
        "no-uscc",
        "unknown-purpose",
        "extra-field",
        "long-reference",
        "long-consent",
        "huge-code",
    ],
)
def test_body_validation_is_422(client: TestClient, factory: Factory, body: dict[str, Any]) -> None:
    headers = platform(factory)
    response = client.post("/v1/credit-checks", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["type"].endswith("/problems/validation-failed")
    assert used_today(client, headers) == 0


@pytest.mark.parametrize("code", ["", "   ", "\u3000\t", "9" * 19, "9" * 65, "9" * 256])
def test_blank_and_long_codes_are_invalid_uscc_length(
    client: TestClient, factory: Factory, code: str
) -> None:
    """Anything up to 256 characters is a code to check: blank or the wrong length is the
    check's own ``invalid-uscc`` (reason ``length``), not a validation error of the body,
    and costs nothing."""
    headers = platform(factory)
    response = client.post(
        "/v1/credit-checks", json={"uscc": code, "purpose": "ONBOARDING"}, headers=headers
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/problems/invalid-uscc")
    assert problem["reason"] == "length"
    assert used_today(client, headers) == 0


def test_authentication_and_scope_come_first(client: TestClient, factory: Factory) -> None:
    body = {"uscc": "123", "purpose": "NOPE", "extra": 1}
    assert client.post("/v1/credit-checks", json=body).status_code == 401
    admin = factory.headers("admin:data")
    assert client.post("/v1/credit-checks", json=body, headers=admin).status_code == 403


def test_audit_event_and_check_commit_together(
    client: TestClient, factory: Factory, db: Any
) -> None:
    """Every stored check has its event, and the event points at the stored check."""
    headers = platform(factory)
    uscc = factory.merchant()
    ids = [check(client, headers, uscc).json()["id"] for _ in range(3)]
    events = db.scalars(select(AuditEvent).where(AuditEvent.target_id.in_(ids))).all()
    assert sorted(e.target_id for e in events) == sorted(ids)
    assert all(db.get(CreditCheck, i) is not None for i in ids)
