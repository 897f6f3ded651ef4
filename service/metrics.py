"""Prometheus metrics of one process (``GET /metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "creditshare_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "creditshare_http_request_duration_seconds",
    "Request duration by route template",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}
"""The counter and histogram series of each (method, route template, status) seen: looking
a series up by its labels costs more than the request's own bookkeeping. Bounded: methods
are the parser's, templates the app's routes (or ``unmatched``), statuses ours."""


def observe_request(method: str, template: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    key = (method, template, status)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        series = (REQUESTS.labels(method, template, str(status)), LATENCY.labels(template))
        _REQUEST_SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


AUDIT_WRITE_FAILURES = Counter(
    "creditshare_audit_write_failures_total",
    "Requests refused because their audit event could not be written",
    registry=REGISTRY,
)
AUDIT_UNSEALED = Gauge(
    "creditshare_audit_unsealed_events",
    "Events written but not yet sealed into the Merkle log",
    registry=REGISTRY,
)
AUDIT_OLDEST_UNSEALED_SECONDS = Gauge(
    "creditshare_audit_oldest_unsealed_seconds",
    "Age of the oldest unsealed audit event",
    registry=REGISTRY,
)
AUDIT_SEALED = Counter(
    "creditshare_audit_sealed_events_total", "Events sealed by this process", registry=REGISTRY
)
RATELIMIT_FALLBACKS = Counter(
    "creditshare_ratelimit_fallbacks_total",
    "Limiter decisions served by the local fallback because Redis failed",
    registry=REGISTRY,
)
RATELIMIT_REFUSALS = Counter(
    "creditshare_ratelimit_refusals_total",
    "Requests refused by rate limit or quota",
    ["reason"],
    registry=REGISTRY,
)
CHECKS = Counter(
    "creditshare_credit_checks_total", "Credit checks by verdict", ["verdict"], registry=REGISTRY
)
