"""Client administration: auth's registry plus the audit trail and node propagation."""

from __future__ import annotations

from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import record_in_session
from auth import registry
from auth.directory import AuthDirectory
from schemas.clients import (
    ClientCreate,
    ClientCreated,
    ClientOut,
    ClientUpdate,
    RatePlanIn,
    RatePlanOut,
    SecretRotated,
)
from service.db.hooks import after_commit
from service.models import OAuthClient
from service.pagination import decode_str_cursor, encode_cursor
from service.problems import ProblemError


def to_out(row: OAuthClient) -> ClientOut:
    return ClientOut.model_validate(row, from_attributes=True)


def create(session: Session, ctx: RequestAudit, data: ClientCreate) -> ClientCreated:
    row, secret = registry.create_client(session, data)
    ctx.target_type, ctx.target_id = "client", row.client_id
    ctx.details["after"] = registry.describe(row)
    record_in_session(session, ctx, 201)
    return ClientCreated(**to_out(row).model_dump(), client_secret=secret)


def get(session: Session, client_id: str) -> ClientOut:
    return to_out(registry.get_client(session, client_id))


def list_page(
    session: Session, *, limit: int, cursor: str | None
) -> tuple[list[ClientOut], str | None]:
    rows = registry.list_clients(session, limit=limit, before=decode_str_cursor(cursor))
    more = len(rows) > limit
    rows = rows[:limit]
    return [to_out(r) for r in rows], encode_cursor(rows[-1].client_id) if more and rows else None


def update(
    session: Session,
    ctx: RequestAudit,
    directory: AuthDirectory,
    client_id: str,
    data: ClientUpdate,
) -> ClientOut:
    """Apply the change; once committed, every node sees it (suspension refuses tokens at once)."""
    ctx.target_type, ctx.target_id = "client", client_id
    row, before = registry.update_client(session, client_id, data)
    ctx.details.update(before=before, after=registry.describe(row))
    record_in_session(session, ctx, 200)
    after_commit(session, lambda: directory.client_changed(row))
    return to_out(row)


def rotate_secret(session: Session, ctx: RequestAudit, client_id: str) -> SecretRotated:
    ctx.target_type, ctx.target_id = "client", client_id
    row, secret = registry.rotate_secret(session, client_id)
    ctx.details["secret_rotated"] = True
    record_in_session(session, ctx, 200)
    assert row.secret_rotated_at is not None
    return SecretRotated(
        client_id=row.client_id, client_secret=secret, secret_rotated_at=row.secret_rotated_at
    )


def list_plans(
    session: Session, *, limit: int, cursor: str | None
) -> tuple[list[RatePlanOut], str | None]:
    """A page of rate plans in name order (a small reference table: its names are its
    order; ``?cursor=`` continues after the last name of the page before)."""
    rows = registry.list_plans(session, limit=limit, after=decode_str_cursor(cursor))
    more = len(rows) > limit
    rows = rows[:limit]
    items = [RatePlanOut.model_validate(p, from_attributes=True) for p in rows]
    return items, encode_cursor(rows[-1].name) if more and rows else None


def put_plan(
    session: Session, ctx: RequestAudit, name: str, data: RatePlanIn
) -> tuple[RatePlanOut, bool]:
    if len(name) > 64:
        raise ProblemError("not-found")
    ctx.target_type, ctx.target_id = "rate_plan", name
    before = registry.get_plan(session, name)
    if before is not None:
        ctx.details["before"] = {
            "requests_per_second": before.requests_per_second,
            "burst": before.burst,
            "daily_quota": before.daily_quota,
        }
    row, created = registry.put_plan(session, name, data)
    ctx.details["after"] = data.model_dump()
    record_in_session(session, ctx, 201 if created else 200)
    return RatePlanOut.model_validate(row, from_attributes=True), created
