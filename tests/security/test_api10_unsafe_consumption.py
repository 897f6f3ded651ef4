"""OWASP API10:2023 Unsafe Consumption of APIs: data consumed from source authorities
(NDJSON imports) is validated line by line, bounded, and never reflected back."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fixtures.factories import Factory, random_uscc

NDJSON = {"Content-Type": "application/x-ndjson"}


def test_hostile_import_lines_are_refused_individually(
    client: TestClient, factory: Factory
) -> None:
    headers = {**factory.headers("admin:data"), **NDJSON}
    good = random_uscc()
    lines = [
        b'{"kind": "merchant", "uscc": "'
        + good.encode()
        + b'", "name": "ok", "entity_type": "COMPANY", "registration_status": "ACTIVE"}',
        b'{"kind": "<script>alert(1)</script>"}',
        b'{"kind": "merchant", "uscc": "' + b"9" * 100_000 + b'"}',
        b"\xff\xfe not json",
        b'{"kind": "record", "uscc": "' + good.encode() + b'", "category": "DROP TABLE merchants"}',
    ]
    response = client.post("/v1/admin/imports", content=b"\n".join(lines), headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert {entry["line"] for entry in body["rejected"]} == {2, 3, 4, 5}
    assert "<script>" not in response.text
    assert "DROP TABLE" not in response.text
    assert "9" * 100 not in response.text
