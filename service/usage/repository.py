"""All SQL of the usage resource: rate plan rows."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.models import RatePlanRow


def get_plan(session: Session, name: str) -> RatePlanRow | None:
    return session.get(RatePlanRow, name)
