"""``/v1/credit-checks``: checks made by platforms, and reading them back.

The two POST routes are the hot path. Each makes exactly one thread hop, through the
check runner (``runner.py``: a per-process thread limit sized for the database, and
SQLite's writers serialised in-process), and opens the request's transaction itself with
the session dependency's own generator (the same commit, rollback and audit bookkeeping
as ``SessionDep``) instead of declaring ``SessionDep``, whose enter and exit would each
cost a further hop. The body is serialised once; the response returns those bytes (the
stored ones).
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from auth.dependencies import CreditCheckAccess
from auth.principal import Principal
from schemas.common import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, NO_CONTROL_CHARACTERS
from schemas.credit_checks import (
    BatchCreate,
    BatchResponse,
    CreditCheck,
    CreditCheckCreate,
    CreditCheckPage,
)
from service.credit_checks import batch, service
from service.credit_checks.issuing import ACTION_BATCH, ACTION_CREATE
from service.credit_checks.render import batch_body, page_body
from service.credit_checks.runner import CheckRunner, check_runner
from service.credit_checks.single import (
    created_headers,
    single_check_request,
    with_rate_state,
)
from service.credit_checks.single_service import issuers, single_checks
from service.db.session import SessionDep, get_session
from service.openapi_docs import STANDARD, problems
from service.problems import ProblemError
from service.problems.render import problem_body, wants_chinese
from service.ratelimit.charging import RateGate
from service.ratelimit.dependency import RateGateDep

router = APIRouter(prefix="/v1", tags=["credit checks"], responses=problems(*STANDARD))
JSON = "application/json"
_transaction = contextmanager(get_session)

RATE_HEADERS = {
    "RateLimit-Policy": {"description": "The client's limits", "schema": {"type": "string"}},
    "RateLimit": {"description": "What is left of them", "schema": {"type": "string"}},
}


@router.post(
    "/credit-checks",
    status_code=201,
    response_model=None,
    name="credit_checks.create",
    responses={
        201: {
            "model": CreditCheck,
            "description": "The check, as stored",
            "links": {
                "GetCheck": {
                    "operationId": "credit_checks.get",
                    "parameters": {"check_id": "$response.body#/id"},
                }
            },
            "headers": {
                "Location": {"description": "/v1/credit-checks/{id}", "schema": {"type": "string"}},
                **RATE_HEADERS,
            },
        },
        **problems(404, 429),
    },
)
async def create_check(
    request: Request, body: CreditCheckCreate, principal: CreditCheckAccess, gate: RateGateDep
) -> Response:
    """Check one merchant: a verdict, its reasons, the records with `credit:detail`, and a
    signed receipt. Counts one check against the quota once the code and purpose are valid
    (an unknown merchant too)."""
    ctx = request.state.audit
    ctx.action = ACTION_CREATE
    ctx.purpose = body.purpose.value
    try:
        check = single_check_request(ctx, principal, body)
    except ProblemError as refusal:
        raise await asyncio.to_thread(gate.with_current_headers, refusal) from None
    result = await single_checks(request.app.state).submit(check)
    if result.problem is not None:
        headers = (await with_rate_state(result, gate)).headers
        raise ProblemError(result.problem, extra=result.problem_extra, headers=headers)
    return Response(result.body, status_code=201, media_type=JSON, headers=created_headers(result))


@router.post(
    "/credit-checks/batch",
    response_model=None,
    name="credit_checks.batch",
    responses={
        200: {"model": BatchResponse, "description": "One result per item, in input order"},
        **problems(429),
    },
)
async def create_batch(
    request: Request, body: BatchCreate, principal: CreditCheckAccess, gate: RateGateDep
) -> Response:
    """Check up to 1000 merchants for one purpose. Each item with a valid code counts as one
    check against the quota; malformed codes are 422 items and cost nothing; if the quota
    cannot cover every valid item, the whole batch is refused (429). Of the burst (the rate
    of requests) a batch takes one unit per started hundred valid items: 10 for 1000. Records
    are included with `credit:detail`; personal data is always masked in a batch (no
    consent reference)."""
    ctx = request.state.audit
    ctx.action = ACTION_BATCH
    ctx.purpose = body.purpose.value
    runner = check_runner(request.app.state)
    content = await runner.run(_create_batch, request, runner, principal, gate, body)
    return Response(content[0], media_type=JSON, headers=content[1])


def _create_batch(
    request: Request,
    runner: CheckRunner,
    principal: Principal,
    gate: RateGate,
    body: BatchCreate,
) -> tuple[bytes, dict[str, str]]:
    ctx = request.state.audit
    issuer = issuers(request.app.state)(principal)
    # Read and decide first, then write: the write gate (SQLite's one writer) is held
    # only for the inserts and the commit, not while a thousand receipts are signed.
    with request.app.state.sessionmaker() as reading:
        try:
            outcome = batch.create_batch(reading, ctx, issuer, gate.charge, body)
        except ProblemError as refusal:
            if refusal.slug != "purpose-not-allowed":  # charged, or the charge's own 429
                raise
            raise gate.with_current_headers(refusal) from None
    with runner.transaction_guard(), _transaction(request) as session:
        batch.store_batch(session, ctx, outcome)
    base_url = request.app.state.settings.public_url
    chinese = wants_chinese(request.headers.get("accept-language"))

    def render_problem(slug: str, extra: dict[str, object] | None) -> bytes:
        return problem_body(
            base_url=base_url, slug=slug, request_id=ctx.request_id, chinese=chinese, extra=extra
        )[1]

    return batch_body(outcome.results, render_problem), outcome.headers


@router.get(
    "/credit-checks",
    response_model=None,
    name="credit_checks.list",
    responses={200: {"model": CreditCheckPage, "description": "Newest first"}},
)
def list_checks(
    request: Request,
    session: SessionDep,
    principal: CreditCheckAccess,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_CHARACTERS)] = None,
) -> Response:
    """The client's own checks, newest first, each as issued: without the records to a token
    lacking `credit:detail`, and with the owner's name masked to one lacking `credit:pii`."""
    ctx = request.state.audit
    ctx.action = "credit_check.list"
    items, next_cursor = service.list_checks(
        session, ctx, request.app.state.keyring, principal, limit=limit, cursor=cursor
    )
    return Response(page_body(items, next_cursor), media_type=JSON)


@router.get(
    "/credit-checks/{check_id}",
    response_model=None,
    name="credit_checks.get",
    responses={200: {"model": CreditCheck, "description": "As issued"}, **problems(404)},
)
def get_check(
    request: Request,
    check_id: Annotated[str, Path(max_length=64, pattern=NO_CONTROL_CHARACTERS)],
    session: SessionDep,
    principal: CreditCheckAccess,
) -> Response:
    """One of the client's own checks, byte for byte as issued (whatever changed since), to a
    token that may see all it shows: without `credit:detail` its records are left out, and
    without `credit:pii` an unmasked owner's name is masked. Another client's check is 404."""
    ctx = request.state.audit
    ctx.action = "credit_check.read"
    body = service.get_check(session, ctx, request.app.state.keyring, principal, check_id)
    return Response(body, media_type=JSON)
