"""All SQL for verdict policies (append-only versions; the highest is in force)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.models import VerdictPolicy


def current_version(session: Session) -> int | None:
    return session.scalar(select(func.max(VerdictPolicy.version)))


def get(session: Session, version: int) -> VerdictPolicy | None:
    return session.get(VerdictPolicy, version)


def current(session: Session) -> VerdictPolicy | None:
    return session.scalars(
        select(VerdictPolicy).order_by(VerdictPolicy.version.desc()).limit(1)
    ).first()


def append(
    session: Session, *, version: int, rules: dict[str, object], at: datetime, by: str
) -> VerdictPolicy:
    """Add version ``version``; a concurrent writer of the same version fails on the key."""
    row = VerdictPolicy(version=version, rules=rules, created_at=at, created_by=by)
    session.add(row)
    session.flush()
    return row
