"""``POST /v1/credit-checks`` without FastAPI's per-request machinery, when plainly valid.

The single check is the request platforms send most, and FastAPI's routing, dependency
solving and response handling cost several times what the check itself costs (see
``bench/RESULTS.md``). This raw ASGI middleware, inside the request envelope (request
id, body limits, security headers, metrics, the audit guarantee), reads the body and
answers the request itself only when everything the route would check holds: a JSON
content type, a body the route's own model validates, a bearer token that validates
(the token cache makes that a dict lookup) and grants ``credit:check``, a well-formed
code and an allowed purpose. Then it submits the check to the same single-check service
as the route and renders the answer as the route does.

Anything else (no or bad token, missing scope, invalid body, malformed code, purpose not
allowed, another content type) is handed on, with the body replayed, to the FastAPI
route, which answers it exactly as before: this path never decides a refusal on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit.context import RequestAudit
from auth.principal import Principal
from auth.tokens import TokenRejected, TokenVerifier
from schemas.credit_checks import CreditCheckCreate
from schemas.enums import Scope as OAuthScope
from service.credit_checks.issuing import ACTION_CREATE
from service.credit_checks.single import (
    CheckRequest,
    CheckResult,
    created_headers,
    lacks_rate_state,
    refused,
    single_check_request,
    with_rate_state,
)
from service.credit_checks.single_service import single_checks
from service.problems import ProblemError
from service.problems.handlers import DATABASE_RETRY_AFTER
from service.problems.render import PROBLEM_CONTENT_TYPE, problem_body
from service.ratelimit.dependency import gate_for

PATH = "/v1/credit-checks"
ROUTE_NAME = "credit_checks.create"
JSON_TYPE = b"application/json"
CHECK_SCOPE = OAuthScope.CREDIT_CHECK.value
UNAVAILABLE = "service-unavailable"
_READ_HEADERS = (b"content-type", b"authorization")


@dataclass(frozen=True, slots=True)
class _StandIn:
    """What the envelope's metrics read from ``scope["route"]``: the route's template and
    name (the path has no parameters, so its template is the path itself)."""

    path: str = PATH
    name: str = ROUTE_NAME


ROUTE = _StandIn()


def _headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """content-type and authorization: the first of each, even if empty, as Starlette's
    ``request.headers.get`` reads them (the envelope has read the language already)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS and name not in found:
            found[name] = value
    return found.get(b"content-type"), found.get(b"authorization")


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, and the disconnect message if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the route the body already read, then the real stream."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if ended is not None:
        pending = [ended]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _principal(verifier: TokenVerifier, authorization: bytes | None) -> Principal | None:
    try:
        principal = verifier.bearer_principal(
            None if authorization is None else authorization.decode("latin-1")
        )
    except TokenRejected:
        return None
    return principal if CHECK_SCOPE in principal.scopes else None


def _body(content_type: bytes | None, body: bytes) -> CreditCheckCreate | None:
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != JSON_TYPE:
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return CreditCheckCreate.model_validate(data)
    except ValidationError:
        return None


class FastCheckMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, ended = await _read_body(receive)
        admitted = None if ended is not None else self._admit(scope, body)
        if admitted is None:
            await self.app(scope, _replay(body, ended, receive), send)
            return
        check, chinese = admitted
        app_state = scope["app"].state
        scope["route"] = ROUTE
        try:
            result = await single_checks(app_state).submit(check)
        except SQLAlchemyError as exc:  # answered as the route's handler answers it
            app_state.logger.error(
                "database unavailable",
                extra={"request_id": check.ctx.request_id, "error": type(exc).__name__},
            )
            unavailable = ProblemError(UNAVAILABLE, headers={"Retry-After": DATABASE_RETRY_AFTER})
            result = refused(check.ctx, unavailable)
        except ProblemError as problem:  # e.g. no verdict policy stored: as the route's 503
            result = refused(check.ctx, problem)
        if lacks_rate_state(result):
            result = await with_rate_state(result, gate_for(app_state, check.principal))
        status, headers, content = self._response(app_state, check.ctx, result, chinese)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _admit(self, scope: Scope, body: bytes) -> tuple[CheckRequest, bool] | None:
        content_type, authorization = _headers(scope)
        data = _body(content_type, body)
        if data is None:
            return None
        request_state: dict[str, Any] = scope.get("state", {})
        ctx: RequestAudit | None = request_state.get("audit")
        if ctx is None:
            return None
        principal = _principal(scope["app"].state.token_verifier, authorization)
        if principal is None:
            return None
        try:
            check = single_check_request(ctx, principal, data)
        except ProblemError:
            return None
        # What the route's dependencies and the route itself note for the audit event.
        ctx.set_actor(principal.client_id, principal.name, principal.kind)
        ctx.action = ACTION_CREATE
        ctx.purpose = check.purpose
        request_state["principal"] = principal
        return check, bool(request_state.get("chinese", False))

    @staticmethod
    def _response(
        app_state: Any, ctx: RequestAudit, result: CheckResult, chinese: bool
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if result.problem is None:
            assert result.body is not None
            status, content, media_type = 201, result.body, JSON_TYPE
            extra = created_headers(result)
        else:
            status, content = problem_body(
                base_url=app_state.settings.public_url,
                slug=result.problem,
                request_id=ctx.request_id,
                chinese=chinese,
                extra=result.problem_extra,
            )
            media_type, extra = PROBLEM_CONTENT_TYPE.encode(), result.headers
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in extra.items()
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        headers.append((b"content-type", media_type))
        return status, headers, content
