"""The request envelope, as raw ASGI for speed: request id, body limits, security
headers, access log, metrics, the audit guarantee, and the last-resort error path.

The audit guarantee: every request to ``/oauth/*`` and ``/v1/*`` leaves one
event before its response starts. If a handler recorded it in its own
transaction, nothing more is done; otherwise the event is written here while
the response start is held back. If it cannot be written, the response is
replaced by ``503 audit-unavailable`` and the original body is dropped, so no
credit data leaves unaudited.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit.context import RequestAudit
from service import metrics
from service.ids import new_id
from service.problems.render import PROBLEM_CONTENT_TYPE, problem_body, wants_chinese

log = logging.getLogger("creditshare.access")
_REQUEST_ID = re.compile(r"^(?!.*[<>\"'`\\])[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$")
"""A client's X-Request-ID is echoed (and kept in the audit trail) when it is printable
ASCII without leading or trailing spaces, markup or quote characters, up to 64 characters
(the trail's column): UUIDs, ULIDs, base64, ``a/b:c=1``; anything else is replaced by a
generated id."""
AUDITED_PREFIXES = ("/v1/", "/oauth/")
AUDITED_ROOTS = frozenset({"/v1", "/oauth"})
"""Every request to ``/oauth/*`` and ``/v1/*`` is audited, the bare roots included."""
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

AuditWriter = Callable[[RequestAudit, int], None]


class BodyTooLarge(Exception):
    pass


_WANTED = (b"x-request-id", b"accept-language", b"content-length", b"x-forwarded-for")


def _headers(scope: Scope) -> dict[bytes, str]:
    """The request headers the envelope reads (the first of each), in one pass."""
    found: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        if key in _WANTED and key not in found:
            found[key] = value.decode("latin-1")
    return found


def _client_ip(scope: Scope, forwarded: str | None, trusted_proxies: int) -> str | None:
    if trusted_proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies][:64]
    client = scope.get("client")
    return str(client[0]) if client else None


class RequestEnvelopeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        base_url: str,
        audit_writer: AuditWriter,
        max_body_bytes: int,
        large_body_paths: dict[str, int],
        trusted_proxies: int = 0,
    ) -> None:
        self.app = app
        self.base_url = base_url
        self.audit_writer = audit_writer
        self.max_body_bytes = max_body_bytes
        self.large_body_paths = large_body_paths
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = _headers(scope)
        sent_id = headers.get(b"x-request-id")
        request_id = sent_id if sent_id and _REQUEST_ID.match(sent_id) else new_id("req")
        path: str = scope["path"]
        ctx = RequestAudit(
            request_id=request_id,
            ip=_client_ip(scope, headers.get(b"x-forwarded-for"), self.trusted_proxies),
            method=scope["method"],
            path=path,
        )
        state = scope.setdefault("state", {})
        state["audit"] = ctx
        state["request_id"] = request_id
        chinese = wants_chinese(headers.get(b"accept-language"))
        state["chinese"] = chinese  # for raw ASGI paths inside (service.credit_checks.fast_path)
        audited = path.startswith(AUDITED_PREFIXES) or path in AUDITED_ROOTS
        limit = self.large_body_paths.get(path, self.max_body_bytes)
        status_holder = {"status": 500, "started": False, "replaced": False}

        async def send_problem(slug: str, **extra: Any) -> None:
            status, body = problem_body(
                base_url=self.base_url, slug=slug, request_id=request_id, chinese=chinese, **extra
            )
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if audited and not ctx.recorded:
                    try:
                        await run_in_threadpool(self.audit_writer, ctx, status)
                    except Exception:
                        log.exception("audit write failed", extra={"request_id": request_id})
                        metrics.AUDIT_WRITE_FAILURES.inc()
                        status_holder["replaced"] = True
                        status, body = problem_body(
                            base_url=self.base_url,
                            slug="audit-unavailable",
                            request_id=request_id,
                            chinese=chinese,
                        )
                        message = {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [
                                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                                (b"content-length", str(len(body)).encode()),
                            ],
                        }
                        await send(self._decorate(message, request_id))
                        await send({"type": "http.response.body", "body": body})
                        status_holder.update(status=status, started=True)
                        return
                status_holder.update(status=status, started=True)
                await send(self._decorate(message, request_id))
                return
            if status_holder["replaced"]:
                return
            await send(message)

        received = 0
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await send_problem("payload-too-large")
            self._finish(scope, ctx, status_holder, started)
            return

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            if not status_holder["started"]:
                await send_problem("payload-too-large")
        except SQLAlchemyError:
            log.exception("database error", extra={"request_id": request_id})
            if not status_holder["started"]:
                await send_problem("service-unavailable")
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not status_holder["started"]:
                await send_problem("internal-error")
        self._finish(scope, ctx, status_holder, started)

    @staticmethod
    def _decorate(message: Message, request_id: str) -> Message:
        """The request id and the security headers (unless the response set its own)."""
        headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
        present = {key.lower() for key, _ in headers}
        headers.append((b"x-request-id", request_id.encode("latin-1")))
        headers.extend((key, value) for key, value in SECURITY_HEADERS if key not in present)
        message["headers"] = headers
        return message

    @staticmethod
    def _finish(scope: Scope, ctx: RequestAudit, holder: dict[str, Any], started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        status = int(holder["status"])
        metrics.observe_request(scope["method"], template, status, elapsed)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "request",
            extra={
                "request_id": ctx.request_id,
                "method": scope["method"],
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "client_id": ctx.actor_client_id,
            },
        )
