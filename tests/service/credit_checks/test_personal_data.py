"""Individual businesses: the owner's name is masked unless credit:pii AND a consent_ref."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.models import AuditEvent, CreditCheck
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import check, platform, roomy

OWNER = "欧阳娜娜"


@pytest.fixture
def shop(factory: Factory) -> str:
    return factory.merchant(random_uscc("92"), name="和平区测试小吃店", legal_representative=OWNER)


@pytest.mark.parametrize(
    ("scopes", "consent"),
    [
        ("credit:check", None),
        ("credit:check", "consent-1"),
        ("credit:check credit:pii", None),
    ],
    ids=["neither", "consent-without-scope", "scope-without-consent"],
)
def test_masked_unless_scope_and_consent(
    client: TestClient, factory: Factory, shop: str, db: Any, scopes: str, consent: str | None
) -> None:
    extra = {"consent_ref": consent} if consent else {}
    response = check(client, platform(factory, scopes), shop, **extra)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merchant"]["entity_type"] == "INDIVIDUAL_BUSINESS"
    assert body["merchant"]["legal_representative"] == "欧***"
    assert OWNER not in response.text
    row = db.get(CreditCheck, body["id"])
    assert row.consent_ref == consent  # stored either way
    assert body["consent_ref"] == consent


def test_unmasked_with_scope_and_consent_and_never_stored_in_clear(
    client: TestClient, factory: Factory, shop: str, db: Any
) -> None:
    headers = platform(factory, "credit:check credit:pii")
    response = check(client, headers, shop, consent_ref="auth-2026-001")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["merchant"]["legal_representative"] == OWNER
    row = db.get(CreditCheck, body["id"])
    assert row.consent_ref == "auth-2026-001"
    assert OWNER not in row.body  # sealed at rest (PIPL)
    again = client.get(f"/v1/credit-checks/{body['id']}", headers=headers)
    assert again.content == response.content
    listed = client.get("/v1/credit-checks", headers=headers).json()["items"]
    assert listed[0] == body
    event = db.scalar(
        select(AuditEvent).where(
            AuditEvent.target_id == body["id"], AuditEvent.action == "credit_check.create"
        )
    )
    assert event.details["personal_data"] == "unmasked"
    assert event.details["consent_ref"] == "auth-2026-001"
    assert OWNER not in str(event.details)


def test_companies_show_their_representative(client: TestClient, factory: Factory) -> None:
    uscc = factory.merchant(legal_representative="李四")
    body = check(client, platform(factory), uscc).json()
    assert body["merchant"]["legal_representative"] == "李四"


def test_batches_always_mask(client: TestClient, factory: Factory, shop: str) -> None:
    headers = platform(factory, "credit:check credit:pii")
    response = client.post(
        "/v1/credit-checks/batch",
        json={"purpose": "ONBOARDING", "items": [{"uscc": shop}]},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["results"][0]["check"]["merchant"]["legal_representative"] == "欧***"


def test_read_back_shows_only_what_the_reading_token_may_see(
    client: TestClient, factory: Factory, shop: str
) -> None:
    """A check issued with the owner's name unmasked and with its records is read back as
    issued by a token with the same scopes; a token of the same client without
    ``credit:pii`` sees the name masked, one without ``credit:detail`` no records. The
    receipt and everything else stay as issued."""
    factory.record(shop, category="SOCIAL_INSURANCE_ARREARS", severity="GENERAL")
    creds = factory.client("credit:check credit:detail credit:pii", rate_plan=roomy(factory))

    def bearer(scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {factory.token(creds, scope)}"}

    full = bearer("credit:check credit:detail credit:pii")
    issued = check(client, full, shop, consent_ref="auth-2026-002")
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["merchant"]["legal_representative"] == OWNER
    assert len(body["records"]) == 1
    path = f"/v1/credit-checks/{body['id']}"

    assert client.get(path, headers=full).content == issued.content
    without_pii = client.get(path, headers=bearer("credit:check credit:detail"))
    assert without_pii.status_code == 200
    assert OWNER not in without_pii.text
    assert without_pii.json() == {
        **body,
        "merchant": {**body["merchant"], "legal_representative": "欧***"},
    }
    only_check = bearer("credit:check")
    narrow = client.get(path, headers=only_check).json()
    assert "records" not in narrow
    assert narrow["merchant"]["legal_representative"] == "欧***"
    assert narrow == {
        key: value
        for key, value in {
            **body,
            "merchant": {**body["merchant"], "legal_representative": "欧***"},
        }.items()
        if key != "records"
    }
    listed = client.get("/v1/credit-checks", headers=only_check).json()["items"]
    assert listed[0] == narrow
    assert OWNER not in client.get("/v1/credit-checks", headers=only_check).text


def test_a_92_code_loaded_as_another_type_still_masks_its_owner(
    client: TestClient, factory: Factory
) -> None:
    """The code's prefix says an individual business: its owner is a natural person
    whatever entity type the data gave it."""
    admin = factory.headers("admin:data")
    uscc = random_uscc("92")
    body = {
        "uscc": uscc,
        "name": "和平区测试小吃店",
        "entity_type": "COMPANY",
        "registration_status": "ACTIVE",
        "legal_representative": OWNER,
    }
    put = client.put(f"/v1/admin/merchants/{uscc}", json=body, headers=admin)
    assert put.status_code in (200, 201), put.text
    response = check(client, platform(factory, "credit:check"), uscc)
    assert response.status_code == 201, response.text
    assert response.json()["merchant"]["legal_representative"] == "欧***"
    assert OWNER not in response.text
    unmasked = check(
        client, platform(factory, "credit:check credit:pii"), uscc, consent_ref="auth-92"
    )
    assert unmasked.json()["merchant"]["legal_representative"] == OWNER


@pytest.mark.parametrize(
    ("name", "masked"),
    [("欧阳娜娜", "欧***"), ("河西区欧阳娜娜小吃店", "河西区欧***小吃店")],
    ids=["named-after-owner", "owner-in-trade-name"],
)
def test_the_owners_name_in_the_business_name_is_masked_too(
    client: TestClient, factory: Factory, db: Any, name: str, masked: str
) -> None:
    admin = factory.headers("admin:data")
    uscc = random_uscc("92")
    body = {
        "uscc": uscc,
        "name": name,
        "entity_type": "INDIVIDUAL_BUSINESS",
        "registration_status": "ACTIVE",
        "legal_representative": OWNER,
    }
    put = client.put(f"/v1/admin/merchants/{uscc}", json=body, headers=admin)
    assert put.status_code == 201, put.text
    single = check(client, platform(factory, "credit:check credit:detail"), uscc)
    assert single.json()["merchant"]["name"] == masked
    batch = client.post(
        "/v1/credit-checks/batch",
        json={"purpose": "ONBOARDING", "items": [{"uscc": uscc}]},
        headers=platform(factory, "credit:check credit:pii"),
    )
    assert batch.json()["results"][0]["check"]["merchant"]["name"] == masked  # never unmasked
    for response in (single, batch):
        assert OWNER not in response.text
    unmasked = check(client, platform(factory, "credit:check credit:pii"), uscc, consent_ref="c")
    assert unmasked.json()["merchant"]["name"] == name
    events = db.scalars(select(AuditEvent).where(AuditEvent.uscc == uscc)).all()
    assert events
    assert all(OWNER not in str(event.details) for event in events)  # the trail: masked only
