"""The application factory: the only module that knows every part."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from audit.context import RequestAudit
from audit.embedded import install as install_audit
from audit.recorder import record_standalone
from auth.dependencies import authorize_before_body
from auth.router import router as oauth_router
from schemas.credit_checks import MAX_BATCH_BODY_BYTES
from service import health
from service.credit_checks.fast_path import FastCheckMiddleware
from service.db import wal_checkpointer
from service.db.migrate import ensure_current
from service.logging import configure_logging
from service.middleware import RequestEnvelopeMiddleware
from service.problems.handlers import install_problem_handlers
from service.problems.pages import router as problem_pages
from service.readiness import Readiness
from service.runtime import Runtime, build_runtime
from service.settings import Settings, load_settings

VERSION = "1.0.0"
DESCRIPTION = """Credit information sharing API of a municipal public credit center.

Platforms check merchants by Unified Social Credit Code and get a verdict, the
evidence and a signed receipt; administrators manage clients and data;
compliance staff read and verify the tamper-evident audit trail.
Authenticate with OAuth 2.0 client credentials at `/oauth/token`.
"""


def _routers() -> list[Any]:
    from service.v1 import routers

    return routers()


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            ensure_current(runtime.engine)
            runtime.key_store.ensure()
            runtime.directory.start()
            for start in app.state.background_starters:
                start()
            # What is bound to an event loop (the single checks' groups, their connections)
            # belongs to this one, which serves the app and runs its shutdown.
            app.state.serving_loop = asyncio.get_running_loop()
        except BaseException:
            for stop in app.state.background_stoppers:
                stop()
            runtime.close()
            raise
        try:
            yield
        finally:
            try:
                # What belongs to the serving event loop first, on it: its groups finish
                # and its connections close.
                app.state.serving_loop = None
                for stop_on_loop in app.state.loop_stoppers:
                    await stop_on_loop()
                await runtime.aclose()
            finally:
                for stop in app.state.background_stoppers:
                    stop()
                runtime.close()

    app = FastAPI(
        title="creditshare",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs_are_enabled else None,
        openapi_url="/openapi.json" if settings.docs_are_enabled else None,
        redoc_url=None,
        # Stable operation ids (the route names), so OpenAPI links and clients can rely on them.
        generate_unique_id_function=lambda route: route.name,
        # FastAPI's native OpenTelemetry asks the global providers (and the environment) on
        # every request whether it should emit: 3-4 % of a credit check's CPU. We ship no
        # OpenTelemetry SDK, so it could never emit; observability is /metrics and the logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    state = app.state
    state.settings = settings
    state.runtime = runtime
    state.engine = runtime.engine
    state.sessionmaker = runtime.sessionmaker
    state.keyring = runtime.keyring
    state.key_store = runtime.key_store
    state.directory = runtime.directory
    state.token_verifier = runtime.token_verifier
    state.oauth_server = runtime.oauth_server
    state.token_throttle = runtime.token_throttle
    state.limiter = runtime.limiter
    state.logger = logging.getLogger("creditshare")
    state.background_starters = []
    state.background_stoppers = []
    state.loop_stoppers = []
    state.serving_loop = None
    state.readiness = Readiness(runtime)
    install_audit(state, runtime)
    checkpointer = wal_checkpointer.for_engine(runtime.engine)
    if checkpointer is not None:
        state.background_starters.append(checkpointer.start)
        state.background_stoppers.append(checkpointer.stop)

    install_problem_handlers(app, authorize_before_body=authorize_before_body)
    app.include_router(oauth_router)
    for router in _routers():
        app.include_router(router)
    app.include_router(health.router)
    app.include_router(problem_pages)

    def write_audit(ctx: RequestAudit, status: int) -> None:
        record_standalone(runtime.sessionmaker, ctx, status)

    # Inside the envelope (added first = inner): the hot path answers plainly valid single
    # checks itself and hands everything else to the route.
    app.add_middleware(FastCheckMiddleware)
    app.add_middleware(
        RequestEnvelopeMiddleware,
        base_url=settings.public_url,
        audit_writer=write_audit,
        max_body_bytes=settings.max_body_bytes,
        large_body_paths={
            "/v1/admin/imports": settings.max_import_bytes,
            "/v1/credit-checks/batch": max(settings.max_body_bytes, MAX_BATCH_BODY_BYTES),
        },
        trusted_proxies=settings.trusted_proxies,
    )

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        app.openapi_schema = schema
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app
