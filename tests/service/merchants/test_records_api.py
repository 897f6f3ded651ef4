"""POST/GET/PATCH /v1/admin/records: idempotent creation, versions, history, transitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from schemas.enums import Category
from service.models import AuditEvent, RecordHistory
from tests.fixtures.factories import Factory, random_uscc, record_body


@pytest.fixture
def admin(factory: Factory) -> tuple[str, dict[str, str]]:
    creds, headers = factory.authed("admin:data")
    return creds.client_id, headers


def create(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/admin/records", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_create_defaults_to_active_and_is_idempotent(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    code = factory.merchant()
    body = record_body(code)
    created = client.post("/v1/admin/records", json=body, headers=headers)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["status"] == "ACTIVE"
    assert record["version"] == 1
    assert created.headers["location"] == f"/v1/admin/records/{record['id']}"

    again = client.post("/v1/admin/records", json=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["id"] == record["id"]

    different = client.post(
        "/v1/admin/records", json={**body, "severity": "SERIOUS"}, headers=headers
    )
    assert different.status_code == 409
    assert different.json()["type"].endswith("/problems/conflict")
    assert different.json()["record_id"] == record["id"]

    merchant = client.get(f"/v1/admin/merchants/{code}", headers=headers).json()
    assert [r["id"] for r in merchant["records"]] == [record["id"]]


def test_record_needs_a_known_merchant(
    client: TestClient, admin: tuple[str, dict[str, str]]
) -> None:
    _, headers = admin
    unknown = client.post("/v1/admin/records", json=record_body(random_uscc()), headers=headers)
    assert unknown.status_code == 422
    assert unknown.json()["type"].endswith("/problems/validation-failed")
    assert unknown.json()["errors"][0]["field"] == "uscc"
    malformed = client.post(
        "/v1/admin/records", json=record_body("91440300708461136U"), headers=headers
    )
    assert malformed.status_code == 422
    assert malformed.json()["reason"] == "checksum"


def test_record_for_legacy_merchant(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    good = random_uscc()
    legacy = good[:-1] + ("0" if good[-1] != "0" else "1")
    factory.merchant(legacy, legacy_code=True)
    response = client.post("/v1/admin/records", json=record_body(legacy.lower()), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["uscc"] == legacy


def test_record_validation(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    code = factory.merchant()
    for body in (
        record_body(code, publicity_until="2026-05-31"),
        record_body(code, category="FRAUD"),
        record_body(code, status="DELETED"),
        record_body(code, decided_on="01/06/2026"),
        record_body(code, version=3),
        record_body(code, id="rec_mine"),
        {k: v for k, v in record_body(code).items() if k != "summary"},
    ):
        response = client.post("/v1/admin/records", json=body, headers=headers)
        assert response.status_code == 422, body
    dates = client.post(
        "/v1/admin/records", json=record_body(code, publicity_until="2026-05-31"), headers=headers
    )
    assert dates.json()["errors"][0]["field"] == "publicity_until"


def test_an_unknown_category_is_told_every_category_there_is(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    body = record_body(factory.merchant(), category="FRAUD")
    response = client.post("/v1/admin/records", json=body, headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "category"
    for category in Category:  # the whole list, not cut short
        assert f"'{category.value}'" in error["message"]
    assert "FRAUD" not in response.text  # never the input echoed


def test_data_updated_at_follows_records(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    code = factory.merchant()

    def data_as_of() -> datetime:
        body = client.get(f"/v1/admin/merchants/{code}", headers=headers).json()
        return datetime.fromisoformat(body["data_updated_at"])

    before = data_as_of()
    record = create(client, headers, record_body(code))
    after_create = data_as_of()
    assert after_create > before
    client.patch(
        f"/v1/admin/records/{record['id']}",
        json={"status": "UNDER_OBJECTION", "reason": "当事人提出异议"},
        headers=headers,
    )
    assert data_as_of() > after_create


def test_patch_keeps_every_version(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory, db: Session
) -> None:
    client_id, headers = admin
    code = factory.merchant()
    record = create(client, headers, record_body(code))
    rid = record["id"]
    steps = [
        {"status": "UNDER_OBJECTION", "reason": "当事人提出异议"},
        {"severity": "MINOR", "summary": "经核查更正：罚款2000元", "reason": "异议核查后更正"},
        {"status": "ACTIVE", "reason": "异议核查完毕，维持记录"},
        {"status": "REPAIRED", "reason": "已履行义务并作出信用承诺，准予修复"},
    ]
    for step in steps:
        response = client.patch(f"/v1/admin/records/{rid}", json=step, headers=headers)
        assert response.status_code == 200, response.text

    detail = client.get(f"/v1/admin/records/{rid}", headers=headers).json()
    assert detail["version"] == 5
    assert detail["status"] == "REPAIRED"
    assert detail["severity"] == "MINOR"
    history = detail["history"]
    assert [h["version"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["change"] for h in history] == [
        "create",
        "status_change",
        "correction",
        "status_change",
        "status_change",
    ]
    assert [h["reason"] for h in history] == [None] + [s["reason"] for s in steps]
    assert {h["changed_by"] for h in history} == {client_id}
    assert [h["snapshot"]["status"] for h in history] == [
        "ACTIVE",
        "UNDER_OBJECTION",
        "UNDER_OBJECTION",
        "ACTIVE",
        "REPAIRED",
    ]
    assert history[1]["snapshot"]["severity"] == "GENERAL"
    assert history[2]["snapshot"]["severity"] == "MINOR"
    assert history[0]["snapshot"]["summary"] == record["summary"]

    rows = db.scalars(select(RecordHistory).where(RecordHistory.record_id == rid)).all()
    assert len(rows) == 5


def test_patch_audited_with_before_and_after(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory, db: Session
) -> None:
    _, headers = admin
    code = factory.merchant()
    rid = create(client, headers, record_body(code))["id"]
    response = client.patch(
        f"/v1/admin/records/{rid}",
        json={"status": "REVOKED", "reason": "原处罚决定已撤销"},
        headers=headers,
    )
    event = db.scalars(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
    ).one()
    assert event.action == "record.update"
    assert (event.target_type, event.target_id, event.uscc) == ("credit_record", rid, code)
    assert event.details["before"]["status"] == "ACTIVE"  # type: ignore[index]
    assert event.details["after"]["status"] == "REVOKED"  # type: ignore[index]
    assert event.details["version"] == 2


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (["REVOKED"], "ACTIVE"),
        (["EXPIRED"], "ACTIVE"),
        (["EXPIRED"], "UNDER_OBJECTION"),
        (["REPAIRED"], "UNDER_OBJECTION"),
        (["REVOKED"], "REPAIRED"),
    ],
)
def test_invalid_transitions_are_409(
    client: TestClient,
    admin: tuple[str, dict[str, str]],
    factory: Factory,
    path: list[str],
    target: str,
) -> None:
    _, headers = admin
    rid = create(client, headers, record_body(factory.merchant()))["id"]
    for status in path:
        ok = client.patch(
            f"/v1/admin/records/{rid}", json={"status": status, "reason": "步骤"}, headers=headers
        )
        assert ok.status_code == 200, ok.text
    refused = client.patch(
        f"/v1/admin/records/{rid}", json={"status": target, "reason": "不允许"}, headers=headers
    )
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["type"].endswith("/problems/conflict")
    assert target not in problem["allowed"]
    detail = client.get(f"/v1/admin/records/{rid}", headers=headers).json()
    assert detail["version"] == 1 + len(path)


def test_patch_validation(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    rid = create(client, headers, record_body(factory.merchant()))["id"]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"status": "EXPIRED"}, "reason"),
        ({}, "body"),
        ({"reason": "只有理由"}, "body"),
        ({"version": 7, "reason": "x"}, "version"),
        ({"uscc": random_uscc(), "reason": "x"}, "uscc"),
        ({"status": "EXPIRED", "reason": "x" * 2001}, "reason"),
        ({"publicity_until": "2026-01-01"}, "publicity_until"),
        ({"decided_on": None}, "body"),
    ]
    for body, field in cases:
        response = client.patch(f"/v1/admin/records/{rid}", json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["field"] == field, (body, response.json())
    assert client.get(f"/v1/admin/records/{rid}", headers=headers).json()["version"] == 1


def test_patch_without_a_change_keeps_the_version(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    record = create(client, headers, record_body(factory.merchant()))
    response = client.patch(
        f"/v1/admin/records/{record['id']}",
        json={"status": "ACTIVE", "severity": record["severity"]},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    assert len(response.json()["history"]) == 1


def test_publicity_can_be_removed_and_restored(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory
) -> None:
    _, headers = admin
    rid = create(client, headers, record_body(factory.merchant()))["id"]
    cleared = client.patch(
        f"/v1/admin/records/{rid}", json={"publicity_until": None}, headers=headers
    )
    assert cleared.status_code == 200
    assert cleared.json()["publicity_until"] is None
    restored = client.patch(
        f"/v1/admin/records/{rid}", json={"publicity_until": "2027-01-01"}, headers=headers
    )
    assert restored.json()["publicity_until"] == "2027-01-01"
    assert restored.json()["version"] == 3


def test_unknown_record_is_404(client: TestClient, admin: tuple[str, dict[str, str]]) -> None:
    _, headers = admin
    assert client.get("/v1/admin/records/rec_missing", headers=headers).status_code == 404
    patch = client.patch(
        "/v1/admin/records/rec_missing", json={"status": "EXPIRED", "reason": "x"}, headers=headers
    )
    assert patch.status_code == 404


def test_history_rows_cannot_be_rewritten(
    client: TestClient, admin: tuple[str, dict[str, str]], factory: Factory, db: Session
) -> None:
    _, headers = admin
    rid = create(client, headers, record_body(factory.merchant()))["id"]
    with pytest.raises(DBAPIError):
        db.execute(
            text("UPDATE credit_record_history SET reason = 'rewritten' WHERE record_id = :id"),
            {"id": rid},
        )
    db.rollback()
