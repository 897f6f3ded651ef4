"""``/v1/admin/merchants`` and ``/v1/admin/records``: the registry's data (``admin:data``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from auth.dependencies import AdminDataAccess
from schemas.common import NO_CONTROL_CHARACTERS
from schemas.merchants import (
    MerchantOut,
    MerchantPut,
    RecordCreate,
    RecordDetail,
    RecordOut,
    RecordPatch,
)
from service.db.session import SessionDep
from service.merchants import service
from service.openapi_docs import STANDARD, problems

router = APIRouter(prefix="/v1/admin", tags=["administration"], responses=problems(*STANDARD))
USCCPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL_CHARACTERS,
        description="The merchant's USCC",
    ),
]
RecordId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS)]


@router.put(
    "/merchants/{uscc}",
    response_model=MerchantOut,
    name="merchants.put",
    responses={201: {"description": "Created", "model": MerchantOut}, **problems(409)},
)
def put_merchant(
    request: Request,
    response: Response,
    uscc: USCCPath,
    body: MerchantPut,
    session: SessionDep,
    principal: AdminDataAccess,
) -> MerchantOut:
    """Create (201) or replace (200) a merchant. Personal data is stored encrypted and shown masked."""
    request.state.audit.action = "merchant.put"
    out, created = service.put_merchant(
        session, request.state.audit, request.app.state.keyring, uscc, body
    )
    if created:
        response.status_code = 201
        response.headers["Location"] = f"/v1/admin/merchants/{out.uscc}"
    return out


@router.get(
    "/merchants/{uscc}",
    response_model=MerchantOut,
    name="merchants.get",
    responses=problems(404),
)
def get_merchant(
    request: Request, uscc: USCCPath, session: SessionDep, principal: AdminDataAccess
) -> MerchantOut:
    """A merchant with all its records (personal data masked)."""
    request.state.audit.action = "merchant.read"
    return service.get_merchant(session, request.state.audit, uscc)


@router.post(
    "/records",
    status_code=201,
    response_model=RecordOut,
    name="records.create",
    responses={200: {"description": "The same record was already stored"}, **problems(409)},
)
def create_record(
    request: Request,
    response: Response,
    body: RecordCreate,
    session: SessionDep,
    principal: AdminDataAccess,
) -> RecordOut:
    """Add a credit record to a known merchant; posting the same record again returns it (200)."""
    request.state.audit.action = "record.create"
    out, created = service.create_record(session, request.state.audit, principal.client_id, body)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/admin/records/{out.id}"
    return out


@router.get(
    "/records/{record_id}",
    response_model=RecordDetail,
    name="records.get",
    responses=problems(404),
)
def get_record(
    request: Request, record_id: RecordId, session: SessionDep, principal: AdminDataAccess
) -> RecordDetail:
    """A record with every version it has had."""
    request.state.audit.action = "record.read"
    return service.get_record(session, request.state.audit, record_id)


@router.patch(
    "/records/{record_id}",
    response_model=RecordDetail,
    name="records.update",
    responses=problems(404, 409),
)
def patch_record(
    request: Request,
    record_id: RecordId,
    body: RecordPatch,
    session: SessionDep,
    principal: AdminDataAccess,
) -> RecordDetail:
    """Change the status (``reason`` required) or correct fields; each change is a new version."""
    request.state.audit.action = "record.update"
    return service.patch_record(session, request.state.audit, principal.client_id, record_id, body)
