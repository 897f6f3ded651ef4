"""``/v1/usage``: the calling client's rate plan, and what is used and left today."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth.dependencies import CreditCheckAccess
from schemas.usage import Usage
from service.openapi_docs import STANDARD, problems
from service.ratelimit import policy_header_value, ratelimit_header_value
from service.ratelimit.dependency import RateGateDep
from service.usage import service

router = APIRouter(prefix="/v1", tags=["credit checks"], responses=problems(*STANDARD))


@router.get("/usage", response_model=Usage, name="usage.get")
def get_usage(
    request: Request, response: Response, principal: CreditCheckAccess, gate: RateGateDep
) -> Usage:
    """Charges nothing. Carries the same ``RateLimit`` headers a check would."""
    request.state.audit.action = "usage.read"
    plan, decision = gate.peek()
    # No Retry-After: this response is not a refusal, even when the quota is used up.
    response.headers["RateLimit-Policy"] = policy_header_value(plan)
    response.headers["RateLimit"] = ratelimit_header_value(decision)
    return service.usage(principal.client_id, plan, decision)
