"""Single checks, issued in groups: what one turn of the coalescer does.

Every ``POST /v1/credit-checks`` that passed validation and authentication, with a
well-formed code, becomes a :class:`CheckRequest`; the coalescer (``coalescer.py``) hands the
requests that arrived together to :func:`issue_group`, which answers each of them
exactly as one request on its own would be answered, in one transaction:

1. one query reads every merchant of the group and its counting records;
2. the refusals that cost nothing, per request in the route's order: a code that failed
   only its check character is a ``422 invalid-uscc`` unless the registry holds it as a
   legacy code; then a purpose the client may not use (403);
3. one call to the limiter (one Redis round trip) charges one check to each remaining
   request's plan, in arrival order (``429``/``503`` refuse it);
4. an unknown merchant is ``404 merchant-not-found`` (charged, as documented); otherwise
   the check is decided, signed and serialised;
5. the checks and the audit events are converted for the database; the caller then
   writes them with :func:`store_group` in one transaction (on PostgreSQL one statement,
   which is its own transaction): every request leaves its event in the same transaction
   as its check, so both commit or neither does.

The caller commits and then marks each request's event as recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import psycopg
from sqlalchemy import Connection, Dialect

from audit.context import RequestAudit
from audit.recorder import event_values, prepare_event_rows
from auth.principal import Principal
from schemas.credit_checks import CreditCheckCreate
from schemas.enums import Scope
from service.credit_checks import repository
from service.credit_checks.document import timestamp
from service.credit_checks.issuing import (
    TARGET_TYPE,
    IssuedCheck,
    Issuer,
    invalid_uscc,
    issue,
    parse_code,
)
from service.db.bulk_insert import (
    PreparedInsert,
    run_as_one_statement,
    run_as_one_statement_async,
)
from service.policy.engine import policy_day
from service.problems import ProblemError
from service.ratelimit.charging import ChargeOutcome, RateGate

LEGACY_REASON = "checksum"
FREE_REFUSALS = frozenset({"invalid-uscc", "purpose-not-allowed"})
"""The refusals that cost nothing (decided before the charge)."""
_PII_SCOPE = Scope.CREDIT_PII.value
log = logging.getLogger("creditshare.checks")


@dataclass(slots=True)
class CheckRequest:
    """One validated single-check request, waiting to be issued."""

    ctx: RequestAudit
    principal: Principal
    code: str
    purpose: str
    reference: str | None
    consent_ref: str | None
    legacy: bool = False
    """The code fails only its check character: found if the registry holds it, else 422."""
    purpose_allowed: bool = True
    """False only with ``legacy``: which refusal wins (422 or 403) needs the lookup."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one request: a check (201) or a problem."""

    status: int
    body: bytes | None = None
    check_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    problem: str | None = None
    problem_extra: dict[str, object] | None = None


def single_check_request(
    ctx: RequestAudit, principal: Principal, body: CreditCheckCreate
) -> CheckRequest:
    """The request to issue, or ``ProblemError``: a malformed code (422 with its reason),
    then a purpose the client may not use (403). A code failing only its check character
    goes on: whether it is a legacy code the registry holds needs the lookup."""
    code, reason = parse_code(body.uscc)
    if reason is not None and reason != LEGACY_REASON:
        raise invalid_uscc(reason)
    purpose = body.purpose.value
    allowed = purpose in principal.purposes
    if not allowed and reason is None:
        # The refused attempt names its merchant in the trail (its access log shows it).
        ctx.uscc = code
        raise ProblemError("purpose-not-allowed")
    return CheckRequest(
        ctx=ctx,
        principal=principal,
        code=code,
        purpose=purpose,
        reference=body.reference,
        consent_ref=body.consent_ref,
        legacy=reason is not None,
        purpose_allowed=allowed,
    )


def lacks_rate_state(result: CheckResult) -> bool:
    """A refusal that cost nothing decided in the group (a wrong check character that is
    no legacy code the registry holds, or then a purpose not allowed): its response still
    shows the client's rate-limit state (:func:`with_rate_state`)."""
    return result.problem in FREE_REFUSALS and not result.headers


async def with_rate_state(result: CheckResult, gate: RateGate) -> CheckResult:
    """``result`` with the client's rate-limit headers as they stand if it
    :func:`lacks_rate_state`, as the route's own refusals carry them (the limiter peeked
    on a thread)."""
    if not lacks_rate_state(result):
        return result
    return replace(result, headers=await asyncio.to_thread(gate.current_headers))


def created_headers(result: CheckResult) -> dict[str, str]:
    """The headers of a 201: where the check lives, and the client's rate-limit state."""
    return {"Location": f"/v1/credit-checks/{result.check_id}", **result.headers}


IssuerFor = Callable[[Principal], Issuer]
"""The issuer of one principal's checks (the group's policy and key); raises
``ProblemError`` when checks cannot be issued at all (no signing key)."""

ChargeEach = Callable[[Sequence[Principal]], list[ChargeOutcome]]
"""One check charged to each principal's plan, in one call to the limiter."""

AsyncChargeEach = Callable[[Sequence[Principal]], Awaitable[list[ChargeOutcome]]]
""":data:`ChargeEach`, awaited on the event loop."""


def note_issued(ctx: RequestAudit, check: IssuedCheck, consent_ref: str | None) -> None:
    """What a request's audit event says about the check it received."""
    ctx.target_type, ctx.target_id = TARGET_TYPE, check.id
    ctx.details["verdict"] = check.verdict
    if check.unmasked:
        ctx.details.update(personal_data="unmasked", consent_ref=consent_ref)


def refused(ctx: RequestAudit, problem: ProblemError) -> CheckResult:
    """A problem as a request's answer, noted for its audit event as the handlers note it."""
    ctx.details["problem"] = problem.slug
    return CheckResult(
        problem.status,
        headers=problem.headers,
        problem=problem.slug,
        problem_extra=problem.extra or None,
    )


def _before_charge(
    request: CheckRequest, issuer_for: IssuerFor, subjects: dict[str, repository.Subject]
) -> Issuer | ProblemError:
    """The refusals that cost nothing, in the route's order; else the request's issuer."""
    try:
        issuer = issuer_for(request.principal)
    except ProblemError as refusal:
        return refusal
    if request.legacy and request.code not in subjects:
        return ProblemError("invalid-uscc", extra={"reason": LEGACY_REASON})
    if not request.purpose_allowed:
        return ProblemError("purpose-not-allowed")
    return issuer


def _issue_one(
    request: CheckRequest,
    issuer: Issuer,
    subject: repository.Subject,
    headers: dict[str, str],
    *,
    now: datetime,
    today: date,
    created_at: str,
) -> tuple[CheckResult, IssuedCheck]:
    # Unmasked personal data needs both the scope and the owner's consent reference; a
    # consent_ref without the scope is only stored.
    may_unmask = request.principal.has(_PII_SCOPE) and request.consent_ref is not None
    check = issue(
        issuer,
        subject,
        purpose=request.purpose,
        reference=request.reference,
        consent_ref=request.consent_ref,
        may_unmask=may_unmask,
        now=now,
        today=today,
        created_at=created_at,
    )
    note_issued(request.ctx, check, request.consent_ref)
    return CheckResult(201, body=check.body, check_id=check.id, headers=headers), check


@dataclass(frozen=True, slots=True)
class IssuedGroup:
    """The answers to a group, and what :func:`store_group` writes for them (converted for
    the database already, so that a writer waiting on SQLite's write gate holds it only for
    the inserts and the commit)."""

    results: list[CheckResult]
    event_ids: list[str]
    """The id of each request's audit event, in order."""
    checks: PreparedInsert
    events: PreparedInsert


def issue_group(
    connection: Connection,
    requests: Sequence[CheckRequest],
    issuer_for: IssuerFor,
    charge_each: ChargeEach,
    now: datetime,
) -> IssuedGroup:
    """Answer every request (see the module docstring), reading on ``connection``."""
    subjects = read_subjects(connection, requests, now)
    screened = [_before_charge(r, issuer_for, subjects) for r in requests]
    charges = charge_each(_to_charge(requests, screened))
    return _decide(connection.dialect, requests, screened, subjects, charges, now)


async def issue_group_async(
    connection: psycopg.AsyncConnection[Any],
    dialect: Dialect,
    requests: Sequence[CheckRequest],
    issuer_for: IssuerFor,
    charge_each: AsyncChargeEach,
    now: datetime,
) -> IssuedGroup:
    """:func:`issue_group` on the event loop: the read on a PostgreSQL connection of its
    own (``service.db.async_pg``) and the limiter's round trip awaited."""
    subjects = await repository.load_subjects_async(
        connection, dialect, _codes(requests), policy_day(now)
    )
    return await decide_group_async(dialect, requests, subjects, issuer_for, charge_each, now)


def read_subjects(
    connection: Connection, requests: Sequence[CheckRequest], now: datetime
) -> dict[str, repository.Subject]:
    """Step 1 of the module docstring on its own: the group's merchants and records."""
    return repository.load_subjects(connection, _codes(requests), policy_day(now))


async def decide_group_async(
    dialect: Dialect,
    requests: Sequence[CheckRequest],
    subjects: dict[str, repository.Subject],
    issuer_for: IssuerFor,
    charge_each: AsyncChargeEach,
    now: datetime,
) -> IssuedGroup:
    """Steps 2 to 5 of the module docstring, once the group's subjects are read, with the
    limiter's round trip awaited."""
    screened = [_before_charge(r, issuer_for, subjects) for r in requests]
    charges = await charge_each(_to_charge(requests, screened))
    return _decide(dialect, requests, screened, subjects, charges, now)


def _codes(requests: Sequence[CheckRequest]) -> set[str]:
    return {request.code for request in requests}


def _to_charge(
    requests: Sequence[CheckRequest], screened: Sequence[Issuer | ProblemError]
) -> list[Principal]:
    """Whom to charge: every request that passed the refusals that cost nothing."""
    return [r.principal for r, s in zip(requests, screened, strict=True) if isinstance(s, Issuer)]


def _decide(
    dialect: Dialect,
    requests: Sequence[CheckRequest],
    screened: Sequence[Issuer | ProblemError],
    subjects: dict[str, repository.Subject],
    charged: Sequence[ChargeOutcome],
    now: datetime,
) -> IssuedGroup:
    """Steps 4 and 5 of the module docstring, once the charges are known (one per request
    that passed the free refusals, in order)."""
    charges = iter(charged)
    created_at, today = timestamp(now), policy_day(now)
    results: list[CheckResult] = []
    rows: list[dict[str, object]] = []
    events: list[dict[str, object]] = []
    for request, issuer in zip(requests, screened, strict=True):
        ctx = request.ctx
        if isinstance(issuer, ProblemError):
            result = refused(ctx, issuer)
        else:
            ctx.uscc = request.code
            charge = next(charges)
            subject = subjects.get(request.code)
            if isinstance(charge, ProblemError):
                result = refused(ctx, charge)
            elif subject is None:
                result = refused(ctx, ProblemError("merchant-not-found", headers=charge))
            else:
                try:
                    result, check = _issue_one(
                        request,
                        issuer,
                        subject,
                        charge,
                        now=now,
                        today=today,
                        created_at=created_at,
                    )
                except Exception:  # this check only (e.g. personal data that will not decrypt)
                    log.exception("check failed", extra={"request_id": ctx.request_id})
                    forget_issued([request])
                    result = refused(ctx, ProblemError("internal-error"))
                else:
                    rows.append(check.row)
        results.append(result)
        # The group's time, the checks' created_at: each event says when its check was made.
        events.append(event_values(ctx, result.status, now=now))
    return IssuedGroup(
        results,
        [str(event["id"]) for event in events],
        repository.prepare_checks(dialect, rows),
        prepare_event_rows(dialect, events),
    )


def store_group(connection: Connection, group: IssuedGroup) -> None:
    """The group's checks and audit events, in the caller's write transaction; on
    PostgreSQL as one statement, which outside a transaction is a transaction of its own
    (``bulk_insert.run_as_one_statement``)."""
    run_as_one_statement(connection, (group.checks, group.events))


async def store_group_async(connection: psycopg.AsyncConnection[Any], group: IssuedGroup) -> None:
    """:func:`store_group` on an autocommit PostgreSQL connection of the event loop: one
    statement, its own transaction."""
    await run_as_one_statement_async(connection, (group.checks, group.events))


def mark_recorded(requests: Sequence[CheckRequest], group: IssuedGroup) -> None:
    """Once the group has committed: each request's event is written."""
    for request, event_id in zip(requests, group.event_ids, strict=True):
        request.ctx.recorded_event_id = event_id


def forget_issued(requests: Sequence[CheckRequest]) -> None:
    """The group did not commit: no request's audit event may name a check or a verdict
    that was never stored (the 503 they get is recorded instead)."""
    for request in requests:
        ctx = request.ctx
        ctx.target_type = ctx.target_id = None
        for key in ("verdict", "personal_data", "consent_ref", "problem"):
            ctx.details.pop(key, None)
