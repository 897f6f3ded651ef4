"""Operations endpoints: liveness, readiness and metrics (not under /v1, not audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from service.metrics import REGISTRY

router = APIRouter(tags=["operations"])


@router.get("/healthz", name="healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    name="readyz",
    responses={503: {"description": "A dependency is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """The database and (when configured) Redis answer; the audit backlog is sealed in time."""
    checks: dict[str, Any] = await run_in_threadpool(request.app.state.readiness.check)
    ok = all(c.get("ok") for c in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


@router.get("/metrics", name="metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    await run_in_threadpool(request.app.state.readiness.refresh_gauges)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
