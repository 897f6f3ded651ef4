"""Turning a problem into bytes; shared by exception handlers and raw ASGI middleware."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from service.problems.catalog import CATALOG

PROBLEM_CONTENT_TYPE = "application/problem+json"


def wants_chinese(accept_language: str | None) -> bool:
    """True when the client's most preferred language is Chinese (``zh``, ``zh-CN``...)."""
    if not accept_language:
        return False
    best_lang, best_q = "", -1.0
    for part in accept_language.split(",")[:20]:
        lang, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > best_q:
            best_lang, best_q = lang.strip().lower(), q
    return best_lang.startswith("zh")


def problem_body(
    *,
    base_url: str,
    slug: str,
    request_id: str,
    chinese: bool,
    status: int | None = None,
    detail_en: str | None = None,
    detail_zh: str | None = None,
    extra: Mapping[str, object] | None = None,
    errors: Sequence[tuple[str, str]] = (),
) -> tuple[int, bytes]:
    kind = CATALOG[slug]
    body: dict[str, object] = {
        "type": f"{base_url}/problems/{slug}",
        "title": kind.title_zh if chinese else kind.title_en,
        "status": status or kind.status,
        "detail": (detail_zh or kind.detail_zh) if chinese else (detail_en or kind.detail_en),
        "request_id": request_id,
    }
    if extra:
        body.update(extra)
    if errors:
        body["errors"] = [{"field": f, "message": m} for f, m in errors]
    return int(body["status"]), orjson.dumps(body)  # type: ignore[call-overload]
