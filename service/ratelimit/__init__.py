"""Rate limiting: plans, limiter backends (Redis, in-process, fallback), header rendering.

Pure library code (no FastAPI): the routes call a :class:`Limiter` from a dependency.
"""

from service.ratelimit.base import (
    SHANGHAI_UTC_OFFSET_SECONDS,
    CostExceedsPlan,
    Limiter,
    LimiterUnavailable,
)
from service.ratelimit.decision import Decision, Reason
from service.ratelimit.fallback import FallbackLimiter
from service.ratelimit.headers import (
    policy_header_value,
    ratelimit_header_value,
    ratelimit_headers,
    retry_after_header,
)
from service.ratelimit.memory import InProcessLimiter
from service.ratelimit.plans import RatePlan
from service.ratelimit.redis_backend import KEY_PREFIX, RedisLimiter

__all__ = [
    "KEY_PREFIX",
    "SHANGHAI_UTC_OFFSET_SECONDS",
    "CostExceedsPlan",
    "Decision",
    "FallbackLimiter",
    "InProcessLimiter",
    "Limiter",
    "LimiterUnavailable",
    "RatePlan",
    "Reason",
    "RedisLimiter",
    "policy_header_value",
    "ratelimit_header_value",
    "ratelimit_headers",
    "retry_after_header",
]
