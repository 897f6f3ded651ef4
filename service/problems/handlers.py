"""FastAPI exception handlers that render every error as a problem."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audit.context import RequestAudit
from service.problems.errors import MAX_ERROR_MESSAGE, ProblemError
from service.problems.render import PROBLEM_CONTENT_TYPE, problem_body, wants_chinese
from service.routing import route_table

_SAFE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_STATUS_SLUGS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-failed",
    429: "rate-limited",
    503: "service-unavailable",
}


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "unknown"))


def _note(request: Request, slug: str) -> None:
    ctx: RequestAudit | None = getattr(request.state, "audit", None)
    if ctx is not None:
        ctx.details["problem"] = slug


def render_problem(
    request: Request,
    slug: str,
    *,
    status: int | None = None,
    detail_en: str | None = None,
    detail_zh: str | None = None,
    extra: dict[str, object] | None = None,
    errors: Sequence[tuple[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    _note(request, slug)
    status_code, body = problem_body(
        base_url=request.app.state.settings.public_url,
        slug=slug,
        request_id=_request_id(request),
        chinese=wants_chinese(request.headers.get("accept-language")),
        status=status,
        detail_en=detail_en,
        detail_zh=detail_zh,
        extra=extra,
        errors=errors,
    )
    return Response(body, status_code=status_code, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if item in ("body", "query", "path", "header") and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and _SAFE_NAME.match(item):
            parts.append(("." if parts else "") + item)
        else:
            parts.append(("." if parts else "") + "<field>")
    return "".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind == "extra_forbidden":
        return "Unknown field: not accepted by this operation"
    if kind == "json_invalid":
        return "Malformed JSON body"
    if kind == "missing":
        return "Field required"
    return str(error.get("msg", "Invalid value"))[:MAX_ERROR_MESSAGE]


async def _problem_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return render_problem(
        request,
        exc.slug,
        status=exc.status,
        detail_en=exc.detail_en,
        detail_zh=exc.detail_zh,
        extra=exc.extra,
        errors=exc.errors,
        headers=exc.headers,
    )


def _validation_error_handler(
    authorize_before_body: Callable[[Request], None],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def _validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        found = exc.errors()
        if found and found[0].get("type") == "json_invalid":
            # Not even JSON: the route's dependencies never ran. Its token and scope checks
            # come first all the same.
            try:
                authorize_before_body(request)
            except ProblemError as refusal:
                return await _problem_error(request, refusal)
        errors = [(_field_path(e.get("loc", ())), _message(e)) for e in found[:50]]
        return render_problem(request, "validation-failed", errors=errors)

    return _validation_error


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # an unparseable body (bad encoding): a validation failure
        return render_problem(
            request, "validation-failed", errors=[("body", "Malformed request body")]
        )
    slug = _STATUS_SLUGS.get(
        exc.status_code, "internal-error" if exc.status_code >= 500 else "not-found"
    )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return render_problem(request, slug, status=exc.status_code, headers=headers or None)


def _allowed_methods(request: Request) -> str:
    """Every method the path answers (RFC 9110 section 15.5.6). Starlette's 405 names only
    the methods of the first route whose path matched, where several routes can share a
    path (``GET`` lists and ``POST`` creates on ``/v1/credit-checks``)."""
    path = request.scope["path"]
    methods: set[str] = set()
    for route in route_table(request.app):
        if route.pattern.match(path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


DATABASE_RETRY_AFTER = "5"
"""Seconds a client should wait after a 503 caused by the database."""


async def _database_error(request: Request, exc: Exception) -> Response:
    request.app.state.logger.error(
        "database unavailable",
        extra={"request_id": _request_id(request), "error": type(exc).__name__},
    )
    return render_problem(
        request, "service-unavailable", headers={"Retry-After": DATABASE_RETRY_AFTER}
    )


def install_problem_handlers(
    app: FastAPI, *, authorize_before_body: Callable[[Request], None]
) -> None:
    """``authorize_before_body(request)``: the route's token and scope checks for a request
    whose body was not even JSON (FastAPI refuses that before the route's dependencies run);
    raises ``ProblemError`` (401, 403) or notes the actor and returns."""
    app.add_exception_handler(ProblemError, _problem_error)
    app.add_exception_handler(
        RequestValidationError, _validation_error_handler(authorize_before_body)
    )
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
