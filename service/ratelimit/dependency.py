"""The FastAPI side of rate limiting: a route declares :data:`RateGateDep` and charges
the client's plan through the :class:`~service.ratelimit.charging.RateGate` it gets (see
``service.ratelimit.charging`` for how requests and batches are charged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth.dependencies import CreditCheckAccess
from service.ratelimit.charging import RateGate, client_key
from service.usage.plans import rate_plans


async def rate_gate(request: Request, principal: CreditCheckAccess) -> RateGate:
    """No I/O here (it runs on the event loop); the plan is read when charging."""
    state = request.app.state
    return RateGate(
        limiter=state.limiter,
        plans=rate_plans(state).get,
        key=client_key(principal.client_id),
        plan_name=principal.rate_plan,
    )


RateGateDep = Annotated[RateGate, Depends(rate_gate)]
