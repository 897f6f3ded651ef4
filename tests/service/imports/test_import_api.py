"""POST /v1/admin/imports: NDJSON upserts, rejections by line, idempotency, dry runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.uscc import ALPHABET
from service.ids import new_id
from service.models import AuditEvent, CreditRecord, Merchant, RecordHistory
from tests.fixtures.factories import Factory, random_uscc
from tests.service.imports.lines_helpers import merchant_line, ndjson, record_line

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def admin(factory: Factory) -> dict[str, str]:
    return {**factory.headers("admin:data"), **NDJSON}


def run(client: TestClient, headers: dict[str, str], body: bytes, **params: str) -> dict[str, Any]:
    response = client.post("/v1/admin/imports", content=body, headers=headers, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_good_lines_land_and_bad_ones_are_reported(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    a, b = random_uscc(), random_uscc()
    secret_marker = "SECRET-INPUT-7f3a"
    body = ndjson(
        merchant_line(a),
        merchant_line(b, entity_type="CORPORATION", name=secret_marker),
        "{not json " + secret_marker,
        record_line(a),
        merchant_line(random_uscc()[:-1] + "I", name=secret_marker),
        record_line(a, severity="FATAL", summary=secret_marker),
        '["a", "list"]',
        record_line(a, decided_on="2026-02-10", publicity_until="2025-01-01"),
        {"kind": "person", "name": secret_marker},
        merchant_line(random_uscc(), registered_on=20180402),
    )
    report = run(client, admin, body)
    assert report["accepted"] == 2
    assert report["updated"] == 0
    assert report["unchanged"] == 0
    assert report["rejected_count"] == 8
    assert report["lines"] == 10
    assert report["dry_run"] is False
    assert report["merchants"] == {"accepted": 1, "updated": 0, "unchanged": 0}
    assert report["records"] == {"accepted": 1, "updated": 0, "unchanged": 0}
    by_line = {r["line"]: r["errors"] for r in report["rejected"]}
    assert sorted(by_line) == [2, 3, 5, 6, 7, 8, 9, 10]
    assert by_line[2][0]["field"] == "entity_type"
    assert by_line[3][0]["field"] == "line"
    assert by_line[5][0]["field"] == "uscc"
    assert by_line[6][0]["field"] == "severity"
    assert by_line[7][0]["field"] == "line"
    assert by_line[8][0]["field"] == "publicity_until"
    assert by_line[9][0]["field"] == "kind"
    assert by_line[10][0]["field"] == "registered_on"
    text = json.dumps(report, ensure_ascii=False)
    assert secret_marker not in text
    assert "CORPORATION" not in text
    assert db.get(Merchant, a) is not None
    assert db.get(Merchant, b) is None


def test_second_import_is_unchanged_and_changes_count_as_updates(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc("92")
    rec_id = new_id("tax")
    lines = [
        merchant_line(code, entity_type="INDIVIDUAL_BUSINESS", legal_representative="赵敏"),
        record_line(code, rec_id),
    ]
    first = run(client, admin, ndjson(*lines))
    assert (first["accepted"], first["updated"], first["unchanged"]) == (2, 0, 0)
    second = run(client, admin, ndjson(*lines))
    assert (second["accepted"], second["updated"], second["unchanged"]) == (0, 0, 2)
    db.expire_all()
    record = db.scalars(select(CreditRecord).where(CreditRecord.source_record_id == rec_id)).one()
    assert record.version == 1
    stamp = db.get(Merchant, code).data_updated_at  # type: ignore[union-attr]

    changed = [
        merchant_line(code, entity_type="INDIVIDUAL_BUSINESS", legal_representative="赵敏敏"),
        record_line(code, rec_id, status="UNDER_OBJECTION"),
    ]
    third = run(client, admin, ndjson(*changed))
    assert (third["accepted"], third["updated"], third["unchanged"]) == (0, 2, 0)
    db.expire_all()
    record = db.get(CreditRecord, record.id)  # type: ignore[assignment]
    assert record is not None
    assert record.version == 2
    assert record.status == "UNDER_OBJECTION"
    history = db.scalars(
        select(RecordHistory)
        .where(RecordHistory.record_id == record.id)
        .order_by(RecordHistory.version)
    ).all()
    assert [(h.version, h.change) for h in history] == [(1, "create"), (2, "import")]
    assert history[1].snapshot["status"] == "UNDER_OBJECTION"
    merchant = db.get(Merchant, code)
    assert merchant is not None
    assert merchant.legal_representative_masked == "赵**"
    assert merchant.data_updated_at > stamp


def test_personal_data_is_sealed_on_import(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc("92")
    line = merchant_line(
        code,
        entity_type="INDIVIDUAL_BUSINESS",
        legal_representative="钱多多",
        owner_id_number="120104198807071234",
    )
    run(client, admin, ndjson(line))
    row = db.get(Merchant, code)
    assert row is not None
    assert row.legal_representative_masked == "钱**"
    assert row.owner_id_masked == "1201**********1234"
    stored = " ".join(str(getattr(row, c.key)) for c in Merchant.__table__.columns)
    assert "钱多多" not in stored
    assert "120104198807071234" not in stored


def test_record_before_its_merchant_in_the_same_file(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc()
    early = [record_line(code) for _ in range(3)]
    report = run(client, admin, ndjson(*early, merchant_line(code)))
    assert report["accepted"] == 4
    assert report["rejected_count"] == 0
    count = db.scalars(select(CreditRecord.id).where(CreditRecord.uscc == code)).all()
    assert len(count) == 3


def test_record_of_unknown_merchant_is_rejected(client: TestClient, admin: dict[str, str]) -> None:
    report = run(
        client, admin, ndjson(record_line(random_uscc()), record_line("91440300708461136U"))
    )
    assert report["accepted"] == 0
    assert [r["line"] for r in report["rejected"]] == [1, 2]
    assert report["rejected"][0]["errors"][0]["field"] == "uscc"
    assert "Unknown merchant" in report["rejected"][0]["errors"][0]["message"]
    assert "check character" in report["rejected"][1]["errors"][0]["message"]


def test_record_of_existing_merchant(
    client: TestClient, admin: dict[str, str], factory: Factory
) -> None:
    code = factory.merchant()
    report = run(client, admin, ndjson(record_line(code.lower())))
    assert report["accepted"] == 1


def _legacy_of(valid: str) -> str:
    """``valid`` with a wrong check character: what authoritative data's legacy codes are."""
    return valid[:-1] + ALPHABET[(ALPHABET.index(valid[-1]) + 1) % len(ALPHABET)]


def test_legacy_codes_are_accepted_flagged_and_listed(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    """DOMAIN.md: "the registry accepts them on import with a flag, and lookups find them"
    (the contract's line shape needs no field of ours for it)."""
    legacy, announced, refused = (_legacy_of(random_uscc()) for _ in range(3))
    report = run(
        client,
        admin,
        ndjson(
            merchant_line(legacy),
            merchant_line(announced, legacy_code=True),
            merchant_line(refused, legacy_code=False),  # the source says: not a legacy code
            record_line(legacy),
        ),
    )
    assert [r["line"] for r in report["rejected"]] == [3]
    assert report["rejected"][0]["errors"][0]["field"] == "uscc"
    assert report["accepted"] == 3
    assert report["legacy_lines"] == [1, 2]
    assert report["legacy_count"] == 2
    for code in (legacy, announced):
        row = db.get(Merchant, code)
        assert row is not None
        assert row.legacy_code is True
    assert db.get(Merchant, refused) is None
    found = client.get(f"/v1/admin/merchants/{legacy.lower()}", headers=admin)
    assert found.status_code == 200
    assert found.json()["legacy_code"] is True


def test_a_code_failing_more_than_its_check_character_is_never_legacy(
    client: TestClient, admin: dict[str, str]
) -> None:
    report = run(
        client, admin, ndjson(merchant_line("91120000MA05ABCDE"), merchant_line("91I2000"))
    )
    assert [r["line"] for r in report["rejected"]] == [1, 2]
    assert report["legacy_lines"] == []


def test_same_key_twice_in_one_file(client: TestClient, admin: dict[str, str], db: Session) -> None:
    code = random_uscc()
    rec_id = new_id("tax")
    report = run(
        client,
        admin,
        ndjson(
            merchant_line(code),
            record_line(code, rec_id),
            merchant_line(code, name="第二次名称有限公司"),
            record_line(code, rec_id, severity="GENERAL"),
            record_line(code, rec_id, severity="GENERAL"),
        ),
    )
    assert (report["accepted"], report["updated"], report["unchanged"]) == (2, 2, 1)
    row = db.get(Merchant, code)
    assert row is not None
    assert row.name == "第二次名称有限公司"
    record = db.scalars(select(CreditRecord).where(CreditRecord.source_record_id == rec_id)).one()
    assert (record.version, record.severity) == (2, "GENERAL")


def test_dry_run_writes_nothing(client: TestClient, admin: dict[str, str], db: Session) -> None:
    existing = random_uscc()
    run(client, admin, ndjson(merchant_line(existing)))
    new = random_uscc()
    rec_id = new_id("tax")
    lines = ndjson(
        merchant_line(existing),
        merchant_line(existing, name="改了名字的有限公司"),
        record_line(new, rec_id),
        merchant_line(new),
        record_line(new, rec_id),
        record_line(random_uscc()),
    )
    report = run(client, admin, lines, dry_run="true")
    assert report["dry_run"] is True
    assert (report["accepted"], report["updated"], report["unchanged"]) == (2, 1, 2)
    assert report["rejected_count"] == 1
    db.expire_all()
    assert db.get(Merchant, new) is None
    assert db.get(Merchant, existing).name == "天津市导入测试商贸有限公司"  # type: ignore[union-attr]
    assert (
        db.scalars(select(CreditRecord).where(CreditRecord.source_record_id == rec_id)).all() == []
    )
    # The real import then does what the dry run announced.
    real = run(client, admin, lines)
    assert (real["accepted"], real["updated"], real["unchanged"]) == (2, 1, 2)


def test_blank_lines_crlf_bom_and_no_final_newline(
    client: TestClient, admin: dict[str, str]
) -> None:
    a, b = random_uscc(), random_uscc()
    body = (
        b"\xef\xbb\xbf"
        + json.dumps(merchant_line(a)).encode()
        + b"\r\n\r\n   \n"
        + json.dumps(merchant_line(b)).encode()
    )
    report = run(client, admin, body)
    assert report["accepted"] == 2
    assert report["lines"] == 2
    assert report["rejected_count"] == 0


def test_overlong_line_is_rejected_alone(client: TestClient, admin: dict[str, str]) -> None:
    code = random_uscc()
    huge = merchant_line(random_uscc(), address="长" * 40_000)
    report = run(client, admin, ndjson(huge, merchant_line(code)))
    assert report["accepted"] == 1
    assert report["rejected"] == [
        {"line": 1, "errors": [{"field": "line", "message": "Longer than 64 KiB: not read"}]}
    ]


def test_unsupported_media_type(client: TestClient, admin: dict[str, str]) -> None:
    body = ndjson(merchant_line(random_uscc()))
    for content_type in ("application/json", "text/plain", None):
        headers = {k: v for k, v in admin.items() if k != "Content-Type"}
        if content_type:
            headers["Content-Type"] = content_type
        response = client.post("/v1/admin/imports", content=body, headers=headers)
        assert response.status_code == 415
        assert response.json()["type"].endswith("/problems/unsupported-media-type")
    charset = {**admin, "Content-Type": "application/x-ndjson; charset=utf-8"}
    assert client.post("/v1/admin/imports", content=body, headers=charset).status_code == 200


def test_dry_run_flag_must_be_boolean(client: TestClient, admin: dict[str, str]) -> None:
    response = client.post("/v1/admin/imports?dry_run=perhaps", content=b"", headers=admin)
    assert response.status_code == 422


def test_import_is_audited_with_counts_only(
    client: TestClient, admin: dict[str, str], db: Session
) -> None:
    code = random_uscc()
    response = client.post(
        "/v1/admin/imports",
        content=ndjson(merchant_line(code, legal_representative="孙悟空"), "oops"),
        headers=admin,
    )
    event = db.scalars(
        select(AuditEvent).where(AuditEvent.request_id == response.headers["x-request-id"])
    ).one()
    assert event.action == "import.run"
    assert event.status == 200
    assert event.details["accepted"] == 1
    assert event.details["rejected_count"] == 1
    assert "孙悟空" not in json.dumps(event.details, ensure_ascii=False)
    assert code not in json.dumps(event.details)


def test_empty_body(client: TestClient, admin: dict[str, str]) -> None:
    report = run(client, admin, b"")
    assert report["lines"] == 0
    assert report["rejected"] == []


def test_imported_rows_read_back_like_any_other(
    client: TestClient, admin: dict[str, str], factory: Factory
) -> None:
    code = random_uscc()
    rec_id = new_id("tax")
    run(client, admin, ndjson(merchant_line(code), record_line(code, rec_id)))
    headers = factory.headers("admin:data")
    merchant = client.get(f"/v1/admin/merchants/{code}", headers=headers).json()
    assert merchant["registered_on"] == "2018-04-02"
    assert merchant["legal_representative"] == "刘洋"
    assert merchant["created_at"].endswith(("Z", "+00:00"))
    (record,) = merchant["records"]
    assert (record["source"], record["source_record_id"]) == ("tax", rec_id)
    assert (record["decided_on"], record["publicity_until"]) == ("2026-02-10", "2029-02-10")
    assert (record["status"], record["version"]) == ("ACTIVE", 1)
    detail = client.get(f"/v1/admin/records/{record['id']}", headers=headers).json()
    (first,) = detail["history"]
    assert first["change"] == "create"
    assert first["snapshot"]["summary"] == "虚开增值税专用发票"
    assert first["snapshot"]["decided_on"] == "2026-02-10"
    # An administrator's correction continues the imported history.
    patched = client.patch(
        f"/v1/admin/records/{record['id']}",
        json={"status": "UNDER_OBJECTION", "reason": "异议"},
        headers=headers,
    )
    assert patched.status_code == 200
    assert [h["version"] for h in patched.json()["history"]] == [1, 2]
