"""Shared OpenAPI response documentation, so every documented error has its schema."""

from __future__ import annotations

from typing import Any

from schemas.problems import Problem

PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "Missing, invalid, expired or revoked access token",
        403: "The token lacks a scope, or the purpose is not allowed",
        404: "Not found (or not this client's)",
        409: "Conflict with the current state",
        413: "Body too large",
        415: "Unsupported media type",
        422: "Validation failed (or invalid USCC)",
        429: "Rate limited or daily quota exceeded",
        503: "Audit trail or a dependency unavailable",
    }
    return {
        s: {
            "description": descriptions.get(s, "Problem"),
            "model": Problem,
            "content": PROBLEM_CONTENT,
        }
        for s in statuses
    }


# Every authenticated /v1 route can answer these.
STANDARD = (401, 403, 413, 422, 503)
