"""The long-lived parts of one process, built once from the settings.

The app factory, the CLI and the worker all build their parts here, so that a
command sees exactly the keys, database and limiter the server sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth.directory import AuthDirectory
from auth.keys import KeyStore
from auth.server import CreditShareAuthorizationServer
from auth.throttle import TokenEndpointThrottle
from auth.tokens import TokenVerifier
from service import metrics
from service.crypto import KeyRing, load_keyring
from service.db.engine import make_engine
from service.db.session import make_sessionmaker
from service.ratelimit import FallbackLimiter, InProcessLimiter, Limiter, RatePlan, RedisLimiter
from service.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessionmaker: sessionmaker[Session]
    keyring: KeyRing
    key_store: KeyStore
    redis: Any | None
    limiter: Limiter
    directory: AuthDirectory
    token_verifier: TokenVerifier
    oauth_server: CreditShareAuthorizationServer
    token_throttle: TokenEndpointThrottle

    async def aclose(self) -> None:
        """Release what is bound to the serving event loop (the limiter's asynchronous
        client), on that loop; :meth:`close` then releases the rest."""
        aclose = getattr(self.limiter, "aclose", None)
        if aclose is not None:
            await aclose()

    def close(self) -> None:
        self.directory.stop()
        self.limiter.close()
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()


def make_limiter(settings: Settings) -> Limiter:
    local = InProcessLimiter()
    if not settings.redis_url:
        return local
    primary = RedisLimiter.from_url(settings.redis_url)
    return FallbackLimiter(
        primary,
        local,
        settings.ratelimit_nodes,
        settings.ratelimit_quota_fail_closed,
        on_fallback=metrics.RATELIMIT_FALLBACKS.inc,
    )


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.effective_database_url, pool_size=settings.db_pool_size)
    factory = make_sessionmaker(engine)
    keyring = load_keyring(settings)
    key_store = KeyStore(factory, keyring, overlap_seconds=settings.key_overlap_seconds)
    redis_client = (
        redis.Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        if settings.redis_url
        else None
    )
    directory = AuthDirectory(factory, redis_client)
    verifier = TokenVerifier(
        key_store, directory, issuer=settings.issuer, audience=settings.resource_identifier
    )
    limiter = make_limiter(settings)
    server = CreditShareAuthorizationServer(
        issuer=settings.issuer,
        audience=settings.resource_identifier,
        session_factory=factory,
        keys=key_store,
        verifier=verifier,
        directory=directory,
        token_ttl=settings.access_token_ttl,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=factory,
        keyring=keyring,
        key_store=key_store,
        redis=redis_client,
        limiter=limiter,
        directory=directory,
        token_verifier=verifier,
        oauth_server=server,
        token_throttle=TokenEndpointThrottle(
            limiter,
            per_address=RatePlan(
                "oauth-address",
                requests_per_second=settings.token_requests_per_second_per_address,
                burst=settings.token_burst_per_address,
                daily_quota=100_000_000,
            ),
            failures_per_address=RatePlan(
                "oauth-fail-address",
                requests_per_second=0.5,
                burst=settings.token_failures_burst_per_address,
                daily_quota=100_000_000,
            ),
        ),
    )
