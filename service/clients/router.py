"""``/v1/admin/clients`` and ``/v1/admin/rate-plans``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response

from auth.dependencies import AdminClientsAccess
from schemas.clients import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientUpdate,
    PlanName,
    RatePlanIn,
    RatePlanOut,
    SecretRotate,
    SecretRotated,
)
from schemas.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, NO_CONTROL_CHARACTERS, Page
from service.clients import service
from service.db.session import SessionDep
from service.openapi_docs import STANDARD, problems

router = APIRouter(prefix="/v1/admin", tags=["administration"], responses=problems(*STANDARD))
ClientId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientCreated,
    name="clients.create",
    responses={
        201: {
            "description": "The client; its secret is shown here only",
            "links": {
                "GetClient": {
                    "operationId": "clients.get",
                    "parameters": {"client_id": "$response.body#/client_id"},
                },
                "UpdateClient": {
                    "operationId": "clients.update",
                    "parameters": {"client_id": "$response.body#/client_id"},
                },
            },
        },
        **problems(409),
    },
)
def create_client(
    request: Request,
    response: Response,
    body: ClientCreate,
    session: SessionDep,
    principal: AdminClientsAccess,
) -> ClientCreated:
    """Register a client. The secret (client_secret_basic) is in this response only."""
    request.state.audit.action = "client.create"
    created = service.create(session, request.state.audit, body)
    response.headers["Location"] = f"/v1/admin/clients/{created.client_id}"
    return created


@router.get("/clients", response_model=Page[ClientOut], name="clients.list")
def list_clients(
    request: Request,
    session: SessionDep,
    principal: AdminClientsAccess,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_CHARACTERS)] = None,
) -> Page[ClientOut]:
    """All clients, newest first."""
    request.state.audit.action = "client.list"
    items, next_cursor = service.list_page(session, limit=limit, cursor=cursor)
    return Page[ClientOut](items=items, next_cursor=next_cursor)


@router.get(
    "/clients/{client_id}", response_model=ClientOut, name="clients.get", responses=problems(404)
)
def get_client(
    request: Request, client_id: ClientId, session: SessionDep, principal: AdminClientsAccess
) -> ClientOut:
    request.state.audit.action = "client.read"
    request.state.audit.target_type, request.state.audit.target_id = "client", client_id
    return service.get(session, client_id)


@router.patch(
    "/clients/{client_id}", response_model=ClientOut, name="clients.update", responses=problems(404)
)
def update_client(
    request: Request,
    client_id: ClientId,
    body: ClientUpdate,
    session: SessionDep,
    principal: AdminClientsAccess,
) -> ClientOut:
    """Change scopes, purposes, rate plan, keys or status; a suspension applies on every node at once."""
    request.state.audit.action = "client.update"
    return service.update(
        session, request.state.audit, request.app.state.directory, client_id, body
    )


@router.post(
    "/clients/{client_id}/secret",
    response_model=SecretRotated,
    name="clients.rotate_secret",
    responses=problems(404, 409),
)
def rotate_secret(
    request: Request,
    client_id: ClientId,
    session: SessionDep,
    principal: AdminClientsAccess,
    body: Annotated[SecretRotate | None, Body()] = None,
) -> SecretRotated:
    """A new secret, shown once; the old one stops working at once. No body, or `{}`: the
    server chooses the secret (any member is 422, a client never sets its own)."""
    request.state.audit.action = "client.rotate_secret"
    return service.rotate_secret(session, request.state.audit, client_id)


@router.get("/rate-plans", response_model=Page[RatePlanOut], name="rate_plans.list")
def list_rate_plans(
    request: Request,
    session: SessionDep,
    principal: AdminClientsAccess,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_CHARACTERS)] = None,
) -> Page[RatePlanOut]:
    """The rate plans, in name order, cursor-paginated like every list."""
    request.state.audit.action = "rate_plan.list"
    items, next_cursor = service.list_plans(session, limit=limit, cursor=cursor)
    return Page[RatePlanOut](items=items, next_cursor=next_cursor)


@router.put(
    "/rate-plans/{name}",
    response_model=RatePlanOut,
    name="rate_plans.put",
    responses={201: {"description": "Created"}},
)
def put_rate_plan(
    request: Request,
    response: Response,
    name: Annotated[PlanName, Path()],
    body: RatePlanIn,
    session: SessionDep,
    principal: AdminClientsAccess,
) -> RatePlanOut:
    """Create or replace a rate plan; clients on it get the new limits at once."""
    request.state.audit.action = "rate_plan.put"
    out, created = service.put_plan(session, request.state.audit, name, body)
    if created:
        response.status_code = 201
    return out
