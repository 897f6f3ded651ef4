"""PUT/GET /v1/admin/merchants/{uscc}: create or replace, codes, personal data, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.uscc import ALPHABET, check_character, organisation_code_check_digit
from service.models import AuditEvent, Merchant
from service.personal_data import unseal
from tests.fixtures.factories import Factory, random_uscc


def merchant_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "天津市测试科技有限公司",
        "entity_type": "COMPANY",
        "registration_status": "ACTIVE",
        "registered_on": "2016-03-08",
        "legal_representative": "王建国",
        "address": "天津市和平区南京路1号",
    }
    body.update(overrides)
    return body


def uscc_with_org_check(prefix: str = "91", *, org_ok: bool = True) -> str:
    """A valid code whose GB 11714 organisation check digit is right (or deliberately wrong)."""
    body8 = random_uscc()[8:16]
    body8 = "".join(c if c.isdigit() else "7" for c in body8)
    digit = organisation_code_check_digit(body8)
    assert digit is not None
    if not org_ok:
        digit = "0" if digit != "0" else "1"
    first17 = prefix + "120101" + body8 + digit
    return first17 + check_character(first17)


def with_wrong_check(code: str) -> str:
    return code[:-1] + ALPHABET[(ALPHABET.index(code[-1]) + 1) % len(ALPHABET)]


@pytest.fixture
def admin(factory: Factory) -> dict[str, str]:
    return factory.headers("admin:data")


def event_for(db: Session, request_id: str) -> AuditEvent:
    return db.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)).one()


def test_create_then_replace(client: TestClient, admin: dict[str, str], db: Session) -> None:
    code = random_uscc()
    created = client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/admin/merchants/{code}"
    body = created.json()
    assert body["uscc"] == code
    assert body["name"] == "天津市测试科技有限公司"
    assert body["records"] == []
    assert body["legacy_code"] is False

    replaced = client.put(
        f"/v1/admin/merchants/{code}",
        json=merchant_body(registration_status="REVOKED", address=None),
        headers=admin,
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["registration_status"] == "REVOKED"
    assert replaced.json()["address"] is None
    assert datetime.fromisoformat(replaced.json()["data_updated_at"]) >= datetime.fromisoformat(
        body["data_updated_at"]
    )
    assert replaced.json()["created_at"] == body["created_at"]

    fetched = client.get(f"/v1/admin/merchants/{code}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json()["registration_status"] == "REVOKED"


def test_identical_put_changes_nothing(client: TestClient, admin: dict[str, str]) -> None:
    code = random_uscc()
    first = client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin).json()
    again = client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin)
    assert again.status_code == 200
    assert again.json()["updated_at"] == first["updated_at"]
    assert again.json()["data_updated_at"] == first["data_updated_at"]


def test_code_is_normalised(client: TestClient, admin: dict[str, str]) -> None:
    code = random_uscc()
    response = client.put(
        f"/v1/admin/merchants/%20{code.lower()}%20", json=merchant_body(), headers=admin
    )
    assert response.status_code == 201, response.text
    assert response.json()["uscc"] == code
    assert client.get(f"/v1/admin/merchants/{code.lower()}", headers=admin).status_code == 200


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91440300708461136", "length"),
        ("91440300708461136TT", "length"),
        ("91440300708461136I", "charset"),
        ("91440300708461136U", "checksum"),
    ],
)
def test_invalid_codes_are_422_with_reason(
    client: TestClient, admin: dict[str, str], code: str, reason: str
) -> None:
    response = client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith("/problems/invalid-uscc")
    assert problem["reason"] == reason
    assert code not in response.text


def test_legacy_code_accepted_with_flag_and_found(
    client: TestClient, admin: dict[str, str]
) -> None:
    legacy = with_wrong_check(random_uscc())
    refused = client.put(f"/v1/admin/merchants/{legacy}", json=merchant_body(), headers=admin)
    assert refused.status_code == 422
    assert refused.json()["reason"] == "checksum"

    accepted = client.put(
        f"/v1/admin/merchants/{legacy}", json=merchant_body(legacy_code=True), headers=admin
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["legacy_code"] is True
    # Held by the registry now: found, and may be replaced without repeating the flag.
    assert client.get(f"/v1/admin/merchants/{legacy}", headers=admin).status_code == 200
    again = client.put(
        f"/v1/admin/merchants/{legacy}", json=merchant_body(name="新名称有限公司"), headers=admin
    )
    assert again.status_code == 200
    assert again.json()["legacy_code"] is True


def test_legacy_flag_still_refuses_malformed_codes(
    client: TestClient, admin: dict[str, str]
) -> None:
    response = client.put(
        "/v1/admin/merchants/9144030070846113", json=merchant_body(legacy_code=True), headers=admin
    )
    assert response.status_code == 422
    assert response.json()["reason"] == "length"


def test_unknown_fields_and_wrong_types_are_422(client: TestClient, admin: dict[str, str]) -> None:
    code = random_uscc()
    for body in (
        merchant_body(created_at="2020-01-01T00:00:00Z"),
        merchant_body(legal_representative_enc="x"),
        merchant_body(entity_type="CORPORATION"),
        merchant_body(registered_on="2016-03-08T00:00:00Z"),
        merchant_body(legacy_code="yes"),
        {k: v for k, v in merchant_body().items() if k != "name"},
    ):
        response = client.put(f"/v1/admin/merchants/{code}", json=body, headers=admin)
        assert response.status_code == 422, body
        assert response.json()["type"].endswith("/problems/validation-failed")
        assert response.json()["errors"]
    assert client.get(f"/v1/admin/merchants/{code}", headers=admin).status_code == 404


def test_body_code_must_match_path(client: TestClient, admin: dict[str, str]) -> None:
    code = random_uscc()
    same = client.put(
        f"/v1/admin/merchants/{code}", json=merchant_body(uscc=code.lower()), headers=admin
    )
    assert same.status_code == 201
    other = client.put(
        f"/v1/admin/merchants/{code}", json=merchant_body(uscc=random_uscc()), headers=admin
    )
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "uscc"


def test_get_unknown_and_invalid(client: TestClient, admin: dict[str, str]) -> None:
    missing = client.get(f"/v1/admin/merchants/{random_uscc()}", headers=admin)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("/problems/merchant-not-found")
    invalid = client.get("/v1/admin/merchants/NOT-A-CODE", headers=admin)
    assert invalid.status_code == 422
    assert invalid.json()["reason"] == "length"


def test_individual_business_personal_data_encrypted_and_masked(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc("92")
    body = merchant_body(
        name="和平区张记早点铺",
        entity_type="INDIVIDUAL_BUSINESS",
        legal_representative="张建国",
        owner_id_number="120101199001011234",
    )
    response = client.put(f"/v1/admin/merchants/{code}", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["legal_representative"] == "张**"
    assert response.json()["owner_id_number"] == "1201**********1234"
    assert "张建国" not in response.text
    assert "120101199001011234" not in response.text

    row = db.get(Merchant, code)
    assert row is not None
    assert row.legal_representative_enc is not None
    assert row.owner_id_enc is not None
    assert "张建国" not in row.legal_representative_enc
    assert "120101199001011234" not in row.owner_id_enc
    assert row.legal_representative_masked == "张**"
    keyring = client.app.state.keyring  # type: ignore[attr-defined]
    assert (
        unseal(keyring, row.legal_representative_enc, uscc=code, field="legal_representative")
        == "张建国"
    )
    assert unseal(keyring, row.owner_id_enc, uscc=code, field="owner_id_number") == (
        "120101199001011234"
    )
    # Nothing in plaintext anywhere in the row, nor in the audit event.
    assert "张建国" not in str([getattr(row, c.key) for c in Merchant.__table__.columns])
    event = event_for(db, response.headers["x-request-id"])
    assert event.action == "merchant.put"
    assert event.details["after"]["legal_representative"] == "张**"  # type: ignore[index]
    assert "张建国" not in str(event.details)
    assert "120101199001011234" not in str(event.details)


def test_company_representative_public_but_still_sealed(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc()
    response = client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin)
    assert response.json()["legal_representative"] == "王建国"
    row = db.get(Merchant, code)
    assert row is not None
    assert row.legal_representative_masked == "王建国"
    assert row.legal_representative_enc is not None
    assert "王建国" not in row.legal_representative_enc


def test_org_code_warning(client: TestClient, admin: dict[str, str]) -> None:
    good = uscc_with_org_check(org_ok=True)
    bad = uscc_with_org_check(org_ok=False)
    ok = client.put(f"/v1/admin/merchants/{good}", json=merchant_body(), headers=admin)
    warned = client.put(f"/v1/admin/merchants/{bad}", json=merchant_body(), headers=admin)
    assert ok.status_code == warned.status_code == 201
    assert ok.json()["org_code_warning"] is False
    assert warned.json()["org_code_warning"] is True


def test_audit_before_after(client: TestClient, admin: dict[str, str], db: Session) -> None:
    code = random_uscc()
    client.put(f"/v1/admin/merchants/{code}", json=merchant_body(), headers=admin)
    response = client.put(
        f"/v1/admin/merchants/{code}", json=merchant_body(name="改名后有限公司"), headers=admin
    )
    event = event_for(db, response.headers["x-request-id"])
    assert event.uscc == code
    assert (event.target_type, event.target_id) == ("merchant", code)
    assert event.outcome == "success"
    assert event.details["before"]["name"] == "天津市测试科技有限公司"  # type: ignore[index]
    assert event.details["after"]["name"] == "改名后有限公司"  # type: ignore[index]


def test_merchant_view_lists_records(
    client: TestClient, admin: dict[str, str], factory: Factory
) -> None:
    code = factory.merchant()
    record_id = factory.record(code)
    body = client.get(f"/v1/admin/merchants/{code}", headers=admin).json()
    assert [r["id"] for r in body["records"]] == [record_id]
    # A merchant written by another path (no stored digest) is compared by content.
    same = client.put(
        f"/v1/admin/merchants/{code}",
        json=merchant_body(
            name="天津测试商贸有限公司",
            legal_representative="张三",
            registered_on="2015-06-01",
            address="天津市和平区测试路1号",
        ),
        headers=admin,
    )
    assert same.status_code == 200
    assert same.json()["updated_at"] == body["updated_at"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/admin/merchants/91440300708461136T"),
        ("GET", "/v1/admin/merchants/91440300708461136T"),
        ("POST", "/v1/admin/records"),
        ("GET", "/v1/admin/records/rec_x"),
        ("PATCH", "/v1/admin/records/rec_x"),
        ("POST", "/v1/admin/imports"),
    ],
)
def test_admin_data_scope_required(
    client: TestClient, factory: Factory, method: str, path: str
) -> None:
    platform = factory.headers("credit:check credit:detail")
    response = client.request(method, path, json={}, headers=platform)
    assert response.status_code == 403
    assert response.json()["type"].endswith("/problems/forbidden")
    assert client.request(method, path, json={}).status_code == 401
