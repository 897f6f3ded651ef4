"""The FastAPI side of rate limiting: a route declares :data:`RateGateDep` and charges
the client's plan through the :class:`~service.ratelimit.charging.RateGate` it gets (see
``service.ratelimit.charging`` for how requests and batches are charged)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from auth.dependencies import CreditCheckAccess
from auth.principal import Principal
from service.ratelimit.charging import RateGate, client_key
from service.usage.plans import rate_plans


def gate_for(state: Any, principal: Principal) -> RateGate:
    """The principal's gate on the app's limiter. No I/O here (it runs on the event loop);
    the plan is read when charging."""
    return RateGate(
        limiter=state.limiter,
        plans=rate_plans(state).get,
        key=client_key(principal.client_id),
        plan_name=principal.rate_plan,
    )


async def rate_gate(request: Request, principal: CreditCheckAccess) -> RateGate:
    return gate_for(request.app.state, principal)


RateGateDep = Annotated[RateGate, Depends(rate_gate)]
