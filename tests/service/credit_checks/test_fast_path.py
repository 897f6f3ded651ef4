"""The single-check fast path (``fast_path.py``) answers exactly as the route would.

FastAPI parses ``application/<x>+json`` bodies as JSON too, while the fast path only
admits ``application/json``: the same request sent with ``application/vnd.test+json``
goes through the FastAPI route, which makes the two paths comparable from outside. The
unit tests at the end call the middleware itself with an inner app that records whether
(and with which body) it was handed the request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from audit.context import RequestAudit
from service.app import create_app
from service.credit_checks.fast_path import FastCheckMiddleware
from service.models import AuditEvent, CreditCheck, Merchant
from service.problems.catalog import CATALOG
from tests.conftest import make_settings
from tests.fixtures.factories import Factory, random_uscc
from tests.service.credit_checks.support import platform, roomy, used_today

T = TypeVar("T")
PATH = "/v1/credit-checks"
FAST = "application/json"
SLOW = "application/vnd.test+json"
"""Parsed as JSON by FastAPI, not admitted by the fast path: the request takes the route."""
SECURITY_HEADERS = {"x-content-type-options", "x-frame-options", "referrer-policy", "cache-control"}
CREATED_HEADERS = {
    "location",
    "ratelimit-policy",
    "ratelimit",
    "x-request-id",
    "content-type",
    "content-length",
    *SECURITY_HEADERS,
}


def _post(
    client: TestClient,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
    content_type: str = FAST,
) -> httpx2.Response:
    content = body if isinstance(body, bytes) else _json(body)
    return client.post(PATH, content=content, headers={**headers, "Content-Type": content_type})


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _both(
    client: TestClient, body: dict[str, Any] | bytes, headers: dict[str, str]
) -> tuple[httpx2.Response, httpx2.Response]:
    """The same request through the fast path, then through the route."""
    return _post(client, body, headers, FAST), _post(client, body, headers, SLOW)


def _event(db: Session, response: httpx2.Response) -> AuditEvent:
    """The one audit event the request left."""
    return _event_by_id(db, response.headers["x-request-id"])


def _event_by_id(db: Session, request_id: str) -> AuditEvent:
    events = db.scalars(select(AuditEvent).where(AuditEvent.request_id == request_id)).all()
    assert len(events) == 1, [(e.action, e.status) for e in events]
    return events[0]


def _slug(response: httpx2.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json")
    problem_type = str(response.json()["type"])
    assert problem_type.startswith("http://testserver/problems/")
    return problem_type.rsplit("/", 1)[-1]


# ---- the same answer on both paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "extra", "prefix"),
    [
        ("credit:check", {}, "91"),
        ("credit:check credit:detail", {"reference": "order-7"}, "91"),
        ("credit:check credit:pii", {"consent_ref": "consent-1"}, "92"),
    ],
    ids=["plain", "detail-and-reference", "individual-unmasked"],
)
def test_a_check_is_answered_alike_on_both_paths(
    client: TestClient,
    factory: Factory,
    db: Session,
    scopes: str,
    extra: dict[str, str],
    prefix: str,
) -> None:
    uscc = factory.merchant(random_uscc(prefix))
    factory.record(uscc, category="ADMINISTRATIVE_PENALTY", severity="GENERAL")
    headers = platform(factory, scopes)
    body = {"uscc": uscc, "purpose": "ONBOARDING", **extra}
    fast, slow = _both(client, body, headers)
    for response in (fast, slow):
        assert response.status_code == 201, response.text
        assert set(response.headers) == CREATED_HEADERS
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["location"] == f"{PATH}/{response.json()['id']}"
        assert db.get(CreditCheck, response.json()["id"]) is not None
    assert fast.headers["ratelimit-policy"] == slow.headers["ratelimit-policy"]
    one, two = fast.json(), slow.json()
    assert one.keys() == two.keys()
    assert one["id"] != two["id"]
    varying = {"id", "created_at", "receipt"}
    assert {k: v for k, v in one.items() if k not in varying} == {
        k: v for k, v in two.items() if k not in varying
    }
    assert one["verdict"] == "CAUTION"
    assert ("records" in one) == ("credit:detail" in scopes)
    if prefix == "92":  # an individual business, its representative unmasked on both paths
        assert one["merchant"]["legal_representative"] == "张三"
        events = [_event(db, fast), _event(db, slow)]
        assert [e.details.get("personal_data") for e in events] == ["unmasked", "unmasked"]
    assert used_today(client, headers) == 2


def test_both_paths_leave_the_same_audit_event(
    client: TestClient, factory: Factory, db: Session
) -> None:
    uscc = factory.merchant()
    headers = platform(factory)
    fast, slow = _both(client, {"uscc": uscc, "purpose": "TRANSACTION_RISK"}, headers)
    assert (fast.status_code, slow.status_code) == (201, 201)
    events = [_event(db, fast), _event(db, slow)]
    columns = [
        (
            e.actor_client_id,
            e.actor_name,
            e.actor_kind,
            e.action,
            e.target_type,
            e.uscc,
            e.purpose,
            e.outcome,
            e.status,
            e.ip,
            e.details,
        )
        for e in events
    ]
    assert columns[0] == columns[1]
    assert [e.target_id for e in events] == [fast.json()["id"], slow.json()["id"]]


def test_every_fast_path_request_leaves_exactly_one_audit_event(
    client: TestClient, factory: Factory, db: Session
) -> None:
    creds, headers = factory.authed("credit:check", rate_plan=roomy(factory))
    clear = factory.merchant()
    caution = factory.merchant()
    factory.record(caution, category="ADMINISTRATIVE_PENALTY", severity="GENERAL")
    expected = {clear: "CLEAR", caution: "CAUTION"}
    responses = [
        _post(client, {"uscc": uscc, "purpose": "ONBOARDING"}, headers)
        for uscc in (clear, caution, clear)
    ]
    for uscc, response in zip((clear, caution, clear), responses, strict=True):
        assert response.status_code == 201, response.text
        event = _event(db, response)
        assert (event.action, event.status, event.outcome) == (
            "credit_check.create",
            201,
            "success",
        )
        assert (event.actor_client_id, event.actor_kind) == (creds.client_id, "platform")
        assert (event.target_type, event.target_id) == ("credit_check", response.json()["id"])
        assert (event.uscc, event.purpose) == (uscc, "ONBOARDING")
        assert event.details["verdict"] == expected[uscc] == response.json()["verdict"]
        assert (event.details["method"], event.details["path"]) == ("POST", PATH)
    by_client = db.scalars(
        select(AuditEvent).where(
            AuditEvent.actor_client_id == creds.client_id,
            AuditEvent.action == "credit_check.create",
        )
    ).all()
    assert sorted(e.request_id for e in by_client) == sorted(
        r.headers["x-request-id"] for r in responses
    )


def test_an_unknown_merchant_is_404_with_rate_limit_headers_on_both_paths(
    client: TestClient, factory: Factory, db: Session
) -> None:
    headers = platform(factory)
    fast, slow = _both(client, {"uscc": random_uscc(), "purpose": "PERIODIC_REVIEW"}, headers)
    for response in (fast, slow):
        assert response.status_code == 404, response.text
        assert _slug(response) == "merchant-not-found"
        assert {"ratelimit", "ratelimit-policy", "x-request-id"} <= set(response.headers)
        assert set(response.headers) >= SECURITY_HEADERS
        problem = response.json()
        assert problem["request_id"] == response.headers["x-request-id"]
        assert problem["title"] == CATALOG["merchant-not-found"].title_en
        event = _event(db, response)
        assert (event.action, event.status, event.purpose) == (
            "credit_check.create",
            404,
            "PERIODIC_REVIEW",
        )
        assert event.details["problem"] == "merchant-not-found"
    assert set(fast.headers) == set(slow.headers)
    assert fast.json().keys() == slow.json().keys()
    assert used_today(client, headers) == 2  # an unknown merchant is counted, on both paths


def test_a_chinese_client_gets_a_chinese_problem_on_both_paths(
    client: TestClient, factory: Factory
) -> None:
    headers = {**platform(factory), "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}
    fast, slow = _both(client, {"uscc": random_uscc(), "purpose": "ONBOARDING"}, headers)
    kind = CATALOG["merchant-not-found"]
    for response in (fast, slow):
        assert response.status_code == 404
        assert (response.json()["title"], response.json()["detail"]) == (
            kind.title_zh,
            kind.detail_zh,
        )
    english = _post(client, {"uscc": random_uscc(), "purpose": "ONBOARDING"}, platform(factory))
    assert english.json()["title"] == kind.title_en


# ---- refusals: left to the route, answered as documented ---------------------------------------


@dataclass(frozen=True)
class Refusal:
    status: int
    slug: str
    body: dict[str, Any] | bytes
    headers: Callable[[Factory], dict[str, str]] = field(default=lambda f: platform(f))
    check: Callable[[httpx2.Response], None] = field(default=lambda _r: None)
    metered: bool = True
    """The client may make checks: its usage shows that the refusal cost nothing."""


def _valid(uscc: str = "91440300708461136T", purpose: str = "ONBOARDING") -> dict[str, Any]:
    return {"uscc": uscc, "purpose": purpose}


def _challenge(error: str | None) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="creditshare"')
        if error is None:
            assert "error=" not in challenge
        else:
            assert f'error="{error}"' in challenge

    return check


def _reason(reason: str) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        assert response.json()["reason"] == reason

    return check


def _fields(*names: str) -> Callable[[httpx2.Response], None]:
    def check(response: httpx2.Response) -> None:
        assert {e["field"] for e in response.json()["errors"]} >= set(names)

    return check


def _scope_challenge(response: httpx2.Response) -> None:
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="credit:check"' in challenge


REFUSALS = {
    "no-token": Refusal(
        401, "unauthorized", _valid(), lambda _f: {}, _challenge(None), metered=False
    ),
    "not-bearer": Refusal(
        401,
        "unauthorized",
        _valid(),
        lambda _f: {"Authorization": "Basic abc"},
        _challenge("invalid_request"),
        metered=False,
    ),
    "bad-token": Refusal(
        401,
        "unauthorized",
        _valid(),
        lambda _f: {"Authorization": "Bearer not-a-token"},
        _challenge("invalid_token"),
        metered=False,
    ),
    "no-credit-check-scope": Refusal(
        403,
        "forbidden",
        _valid(),
        lambda f: f.headers("audit:read"),
        _scope_challenge,
        metered=False,
    ),
    "unknown-field": Refusal(
        422, "validation-failed", {**_valid(), "verdict": "CLEAR"}, check=_fields("verdict")
    ),
    "missing-purpose": Refusal(
        422, "validation-failed", {"uscc": "91440300708461136T"}, check=_fields("purpose")
    ),
    "unknown-purpose": Refusal(
        422, "validation-failed", _valid(purpose="GOSSIP"), check=_fields("purpose")
    ),
    "malformed-json": Refusal(422, "validation-failed", b'{"uscc": '),
    "not-an-object": Refusal(422, "validation-failed", b'["91440300708461136T"]'),
    "nul-in-reference": Refusal(
        422,
        "validation-failed",
        {**_valid(), "reference": "nul\u0000here"},
        check=_fields("reference"),
    ),
    "control-character-in-consent": Refusal(
        422,
        "validation-failed",
        {**_valid(), "consent_ref": "line\nbreak"},
        check=_fields("consent_ref"),
    ),
    "code-length": Refusal(422, "invalid-uscc", _valid("123"), check=_reason("length")),
    "code-charset": Refusal(
        422, "invalid-uscc", _valid("91440300708461136I"), check=_reason("charset")
    ),
    "purpose-not-allowed": Refusal(
        403,
        "purpose-not-allowed",
        _valid(purpose="DISPUTE_HANDLING"),
        lambda f: platform(f, purposes=["ONBOARDING"]),
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals_are_left_to_the_route_and_answered_as_documented(
    client: TestClient, factory: Factory, db: Session, name: str
) -> None:
    refusal = REFUSALS[name]
    headers = refusal.headers(factory)
    fast, slow = _both(client, refusal.body, headers)
    for response in (fast, slow):
        assert response.status_code == refusal.status, response.text
        assert _slug(response) == refusal.slug
        problem = response.json()
        assert problem["status"] == refusal.status
        assert problem["title"] == CATALOG[refusal.slug].title_en
        assert problem["request_id"] == response.headers["x-request-id"]
        assert set(response.headers) >= SECURITY_HEADERS
        refusal.check(response)
        event = _event(db, response)
        assert (event.status, event.details.get("problem")) == (refusal.status, refusal.slug)
    assert set(fast.headers) == set(slow.headers)
    assert fast.json().keys() == slow.json().keys()
    if refusal.metered:
        assert used_today(client, headers) == 0


def test_a_code_failing_only_its_check_character_is_answered_by_the_service(
    client: TestClient, factory: Factory
) -> None:
    """Admitted by the fast path (it might be a legacy code): 422 unless the registry holds
    it, with the same problem as through the route."""
    valid = random_uscc()
    wrong = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    headers = platform(factory)
    fast, slow = _both(client, _valid(wrong), headers)
    for response in (fast, slow):
        assert response.status_code == 422, response.text
        assert _slug(response) == "invalid-uscc"
        assert response.json()["reason"] == "checksum"
        assert wrong not in response.text
    assert set(fast.headers) == set(slow.headers)
    assert used_today(client, headers) == 0


# ---- raw ASGI: the middleware alone, chunked bodies, concurrent requests -----------------------


@dataclass
class Exchange:
    """What one raw ASGI request produced: the response, and what the inner app got."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    handed_on: bool = False
    inner_messages: list[Message] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            self.body += message.get("body", b"")


def _scope(app: Any, headers: dict[str, str], *, state: dict[str, Any] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "app": app,
        "state": {} if state is None else state,
    }


def _receive(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive


def _chunks(body: bytes, size: int) -> list[Message]:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


def _whole(body: bytes) -> list[Message]:
    return [{"type": "http.request", "body": body, "more_body": False}]


def _on_app_loop(client: TestClient, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn`` on the event loop of the running app (as a server would call it)."""
    portal = client.portal
    assert portal is not None
    return portal.call(fn)


def _all_at_once(
    client: TestClient, requests: list[tuple[dict[str, str], dict[str, Any]]]
) -> list[Exchange]:
    """``(headers, body)`` checks sent together on the app's loop (the fast path), so that
    the coalescer groups them; the answers in the same order."""

    async def together() -> list[Exchange]:
        calls = [
            _asgi(client.app, {**headers, "Content-Type": FAST}, _whole(_json(body)))
            for headers, body in requests
        ]
        return list(await asyncio.gather(*calls))

    return _on_app_loop(client, together)


async def _asgi(app: Any, headers: dict[str, str], messages: list[Message]) -> Exchange:
    """One request through the whole app: envelope, fast path, route."""
    exchange = Exchange()
    await app(_scope(app, headers), _receive(messages), exchange.send)
    return exchange


def _call_middleware(
    client: TestClient, headers: dict[str, str], messages: list[Message]
) -> tuple[Exchange, RequestAudit]:
    """The fast path alone, on the app's event loop, with an inner app standing in for
    FastAPI: it records that it was called and every message it received."""
    exchange = Exchange()

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        exchange.handed_on = True
        while True:
            message = await receive()
            exchange.inner_messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    ctx = RequestAudit(request_id=f"req_fast_{id(exchange)}", ip=None, method="POST", path=PATH)
    scope = _scope(client.app, headers, state={"audit": ctx})

    async def call() -> None:
        await FastCheckMiddleware(inner)(scope, _receive(messages), exchange.send)

    _on_app_loop(client, call)
    return exchange, ctx


def test_the_fast_path_answers_a_plainly_valid_check_itself(
    client: TestClient, factory: Factory, db: Session
) -> None:
    creds, headers = factory.authed("credit:check", rate_plan=roomy(factory))
    uscc = factory.merchant()
    body = json.dumps(_valid(uscc)).encode()
    exchange, ctx = _call_middleware(client, {**headers, "Content-Type": FAST}, _whole(body))
    assert not exchange.handed_on
    assert exchange.status == 201
    assert exchange.json()["merchant"]["uscc"] == uscc
    assert exchange.headers["location"] == f"{PATH}/{exchange.json()['id']}"
    assert exchange.headers["content-length"] == str(len(exchange.body))
    assert exchange.headers["content-type"] == "application/json"
    assert {"ratelimit", "ratelimit-policy"} <= set(exchange.headers)
    # The event is written in the check's own transaction and marked, so the envelope
    # writes no second one.
    assert ctx.recorded
    assert (ctx.actor_client_id, ctx.action, ctx.purpose) == (
        creds.client_id,
        "credit_check.create",
        "ONBOARDING",
    )
    event = db.scalar(select(AuditEvent).where(AuditEvent.id == ctx.recorded_event_id))
    assert event is not None
    assert (event.request_id, event.target_id) == (ctx.request_id, exchange.json()["id"])


@pytest.mark.parametrize("size", [1, 7, 64], ids=["bytewise", "7-byte-chunks", "64-byte-chunks"])
def test_a_body_sent_in_chunks_is_read_whole(
    client: TestClient, factory: Factory, size: int
) -> None:
    uscc = factory.merchant()
    body = json.dumps({**_valid(uscc), "reference": "chunked"}).encode()
    messages = _chunks(body, size)
    assert len(messages) > 1
    exchange, ctx = _call_middleware(client, {**platform(factory), "Content-Type": FAST}, messages)
    assert not exchange.handed_on
    assert exchange.status == 201, exchange.body
    assert (exchange.json()["merchant"]["uscc"], exchange.json()["reference"]) == (
        uscc,
        "chunked",
    )
    assert ctx.recorded


def test_a_chunked_request_through_the_whole_app(client: TestClient, factory: Factory) -> None:
    """The envelope, the fast path and the service, driven as a server would."""
    uscc = factory.merchant()
    body = json.dumps(_valid(uscc)).encode()
    headers = {**platform(factory), "Content-Type": FAST}
    exchange = _on_app_loop(client, lambda: _asgi(client.app, headers, _chunks(body, 3)))
    assert exchange.status == 201, exchange.body
    assert exchange.json()["merchant"]["uscc"] == uscc
    assert set(exchange.headers) == CREATED_HEADERS


@pytest.mark.parametrize(
    ("content_type", "body", "auth"),
    [
        (SLOW, _valid(), "check"),
        ("text/plain", _valid(), "check"),
        (None, _valid(), "check"),
        (FAST, _valid(), None),
        (FAST, _valid(), "audit"),
        (FAST, {**_valid(), "verdict": "CLEAR"}, "check"),
        (FAST, _valid("123"), "check"),
        (FAST, _valid(purpose="DISPUTE_HANDLING"), "onboarding-only"),
        (FAST, b'{"uscc": ', "check"),
        (FAST, b"", "check"),
    ],
    ids=[
        "vendor-json",
        "text",
        "no-content-type",
        "no-token",
        "no-scope",
        "unknown-field",
        "malformed-code",
        "purpose-not-allowed",
        "malformed-json",
        "empty-body",
    ],
)
def test_anything_not_plainly_valid_is_handed_on_with_the_body_replayed(
    client: TestClient,
    factory: Factory,
    content_type: str | None,
    body: dict[str, Any] | bytes,
    auth: str | None,
) -> None:
    headers = {
        None: {},
        "check": platform(factory),
        "audit": factory.headers("audit:read"),
        "onboarding-only": platform(factory, purposes=["ONBOARDING"]),
    }[auth]
    if content_type is not None:
        headers["Content-Type"] = content_type
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    messages = _chunks(raw, 5) or _whole(b"")
    exchange, ctx = _call_middleware(client, headers, messages)
    assert exchange.handed_on
    assert exchange.status == 299
    replayed = exchange.inner_messages
    assert [m["type"] for m in replayed] == ["http.request"]
    assert replayed[0]["body"] == raw
    assert not replayed[0].get("more_body", False)
    # Nothing decided, nothing noted: the route does all that.
    assert (ctx.actor_client_id, ctx.action, ctx.recorded, ctx.details) == (None, None, False, {})


def test_a_client_gone_before_the_body_ended_is_handed_on(
    client: TestClient, factory: Factory
) -> None:
    body = json.dumps(_valid(factory.merchant())).encode()
    messages: list[Message] = [*_chunks(body, 10)[:2], {"type": "http.disconnect"}]
    exchange, ctx = _call_middleware(client, {**platform(factory), "Content-Type": FAST}, messages)
    assert exchange.handed_on
    assert [m["type"] for m in exchange.inner_messages] == ["http.disconnect"]
    assert not ctx.recorded


def test_concurrent_checks_of_several_clients_each_get_their_own_answer(
    client: TestClient, factory: Factory, db: Session
) -> None:
    """Requests in flight together are issued in groups: each still gets its own check."""
    clients = [factory.authed("credit:check", rate_plan=roomy(factory)) for _ in range(3)]
    codes = [factory.merchant() for _ in range(4)]
    unknown = random_uscc()
    requests = [
        (creds, {**_valid(uscc), "reference": f"r-{n}"})
        for n, (creds, uscc) in enumerate(
            (clients[n % 3], [*codes, unknown][n % 5]) for n in range(30)
        )
    ]
    answers = _all_at_once(client, [(headers, body) for (_creds, headers), body in requests])
    for ((creds, _headers), body), answer in zip(requests, answers, strict=True):
        event = _event_by_id(db, answer.headers["x-request-id"])
        assert event.actor_client_id == creds.client_id
        if body["uscc"] == unknown:
            assert answer.status == 404, answer.body
            continue
        assert answer.status == 201, answer.body
        check = answer.json()
        assert (check["merchant"]["uscc"], check["reference"]) == (body["uscc"], body["reference"])
        assert event.target_id == check["id"]
        stored = db.get(CreditCheck, check["id"])
        assert stored is not None
        assert (stored.client_id, stored.reference) == (creds.client_id, body["reference"])


# ---- database failures and values a database cannot store -------------------------------------


_REFUSE_CHECKS = {
    "sqlite": [
        "CREATE TRIGGER refuse_checks BEFORE INSERT ON credit_checks "
        "BEGIN SELECT RAISE(ABORT, 'checks refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_checks() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RAISE EXCEPTION 'checks refused'; END $$",
        "CREATE TRIGGER refuse_checks BEFORE INSERT ON credit_checks "
        "FOR EACH ROW EXECUTE FUNCTION refuse_checks()",
    ],
}


def test_a_database_failure_is_answered_alike_on_both_paths(
    tmp_path: Path, scratch_database: Callable[..., str]
) -> None:
    """A database of its own (of the suite's kind) whose ``credit_checks`` refuses inserts
    (a trigger): the write of the check's group fails, on either path (on PostgreSQL the
    group's write is one statement outside a transaction: its audit events are not stored
    either)."""
    url = scratch_database("refusing")
    app = create_app(make_settings(url, None, tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as http:
        factory = Factory(http)
        creds, headers = factory.authed("credit:check")
        uscc = factory.merchant()
        with app.state.engine.begin() as connection:
            for statement in _REFUSE_CHECKS[connection.dialect.name]:
                connection.execute(text(statement))
        fast, slow = _both(http, _valid(uscc), headers)
        with factory.sessionmaker() as session:
            stored = session.scalars(
                select(CreditCheck).where(CreditCheck.client_id == creds.client_id)
            ).all()
            events = [_event(session, fast), _event(session, slow)]
    assert stored == []
    for response, event in zip((fast, slow), events, strict=True):
        assert response.status_code == 503, response.text
        assert _slug(response) == "service-unavailable"
        assert "verdict" not in response.text
        assert (event.status, event.outcome) == (503, "error")
    assert set(fast.headers) == set(slow.headers)
    assert fast.headers.get("retry-after") == slow.headers.get("retry-after") == "5"
    problems = [e.details.get("problem") for e in events]
    assert problems == ["service-unavailable", "service-unavailable"]


def test_a_value_the_database_cannot_store_fails_no_other_request(
    client: TestClient, factory: Factory
) -> None:
    """PostgreSQL cannot store NUL: such a reference is refused up front (422), instead of
    failing the INSERT of the whole group it was coalesced with (every request a 503)."""
    _poisoner, poison = factory.authed("credit:check", rate_plan=roomy(factory))
    _bystander, bystander = factory.authed("credit:check", rate_plan=roomy(factory))
    uscc = factory.merchant()
    requests = [(bystander, _valid(uscc)) for _ in range(10)]
    requests.insert(3, (poison, {**_valid(uscc), "reference": "nul\u0000here"}))
    answers = _all_at_once(client, requests)
    poisoned = answers.pop(3)
    assert [a.status for a in answers] == [201] * 10
    assert poisoned.status == 422, poisoned.body
    assert poisoned.json()["type"].endswith("/problems/validation-failed")
    assert {e["field"] for e in poisoned.json()["errors"]} == {"reference"}


def test_a_check_that_fails_on_its_own_data_fails_alone(
    client: TestClient, factory: Factory, db: Session
) -> None:
    """One check of a group failing (personal data that will not decrypt) is a 500 for
    that request only: the others of its group are issued and committed."""
    shop = factory.merchant(
        random_uscc("92"), name="和平区测试小吃店", legal_representative="欧阳娜娜"
    )
    db.execute(
        update(Merchant).where(Merchant.uscc == shop).values(legal_representative_enc="v1.broken")
    )
    db.commit()
    _pii, pii = factory.authed("credit:check credit:pii", rate_plan=roomy(factory))
    _bystander, bystander = factory.authed("credit:check", rate_plan=roomy(factory))
    other = factory.merchant()
    requests = [(bystander, _valid(other)) for _ in range(10)]
    requests.insert(4, (pii, {**_valid(shop), "consent_ref": "consent-1"}))
    answers = _all_at_once(client, requests)
    broken = answers.pop(4)
    assert [a.status for a in answers] == [201] * 10
    assert broken.status == 500, broken.body
    assert "欧阳娜娜" not in broken.body.decode("utf-8", "replace")
    assert json.loads(broken.body)["type"].endswith("/problems/internal-error")


@pytest.mark.parametrize("content_type", [FAST, SLOW])
def test_an_empty_first_authorization_header_wins_on_both_paths(
    client: TestClient, factory: Factory, content_type: str
) -> None:
    """Starlette reads the first header of a name even when it is empty: so does the fast
    path, so a second, valid Authorization header cannot slip past the route's 401."""
    _creds, headers = factory.authed("credit:check", rate_plan=roomy(factory))
    uscc = factory.merchant()
    raw = [
        (b"content-type", content_type.encode()),
        (b"authorization", b""),
        (b"authorization", headers["Authorization"].encode()),
    ]
    response = client.post("/v1/credit-checks", content=_json(_valid(uscc)), headers=raw)
    assert response.status_code == 401, response.text


def _requests_counted(client: TestClient, status: int) -> float:
    """``creditshare_http_requests_total`` for POST /v1/credit-checks with ``status``."""
    label = f'method="POST",route="{PATH}",status="{status}"'
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("creditshare_http_requests_total{") and label in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_name_both_paths_by_the_route_template(
    client: TestClient, factory: Factory
) -> None:
    """A check answered by the fast path counts under the route's template, as one
    answered by the route does (not as an unmatched request)."""
    uscc = factory.merchant()
    headers = platform(factory)
    before = _requests_counted(client, 201)
    fast, slow = _both(client, {"uscc": uscc, "purpose": "ONBOARDING"}, headers)
    assert (fast.status_code, slow.status_code) == (201, 201)
    assert _requests_counted(client, 201) == before + 2
