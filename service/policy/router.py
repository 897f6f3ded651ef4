"""``/v1/admin/policy``: the verdict policy, versioned."""

from __future__ import annotations

from fastapi import APIRouter, Request

from auth.dependencies import AdminDataAccess
from schemas.policy import PolicyIn, PolicyOut
from service.db.session import SessionDep
from service.openapi_docs import STANDARD, problems
from service.policy import service
from service.policy.cache import policy_cache

router = APIRouter(prefix="/v1/admin", tags=["administration"], responses=problems(*STANDARD))


@router.get("/policy", response_model=PolicyOut, name="policy.get")
def get_policy(request: Request, session: SessionDep, principal: AdminDataAccess) -> PolicyOut:
    """The verdict policy in force (the highest version)."""
    request.state.audit.action = "policy.read"
    return service.get_current(session)


@router.put("/policy", response_model=PolicyOut, name="policy.put", responses=problems(409))
def put_policy(
    request: Request, body: PolicyIn, session: SessionDep, principal: AdminDataAccess
) -> PolicyOut:
    """Replace the policy: it must be complete; it becomes the next version, and every
    check made from then on quotes that version. Earlier versions are kept."""
    request.state.audit.action = "policy.update"
    cache = policy_cache(request.app.state)
    return service.replace(session, request.state.audit, cache, principal.client_id, body)
