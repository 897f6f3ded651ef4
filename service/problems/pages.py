"""``GET /problems/<slug>``: a short human-readable page for each problem type."""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.problems.catalog import CATALOG
from service.problems.errors import ProblemError

router = APIRouter(tags=["operations"])


@router.get(
    "/problems/{slug}",
    response_class=HTMLResponse,
    name="problem_page",
    responses={
        404: {"description": "No such problem type", "content": {"application/problem+json": {}}}
    },
)
async def problem_page(slug: str) -> HTMLResponse:
    """Describe one problem type (the target of every problem's ``type`` URI)."""
    kind = CATALOG.get(slug)
    if kind is None:
        raise ProblemError("not-found")
    page = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>{html.escape(kind.title_en)}</title>"
        f"<h1>{html.escape(kind.title_en)} <small>{html.escape(kind.title_zh)}</small></h1>"
        f"<p>HTTP status {kind.status}. Problem type <code>{html.escape(kind.slug)}</code>.</p>"
        f'<p>{html.escape(kind.detail_en)}</p><p lang="zh-CN">{html.escape(kind.detail_zh)}</p>'
        "</html>"
    )
    return HTMLResponse(page)
