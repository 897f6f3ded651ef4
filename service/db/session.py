"""The session dependency: the one place that commits or rolls back.

Services and repositories only ``flush``. The dependency runs with
``scope="function"`` so the commit happens before the response is sent: a client
never sees a success that was not stored, nor credit data whose audit event was
not stored with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.context import RequestAudit
from service.db.hooks import AFTER_COMMIT


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def get_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    ctx: RequestAudit | None = getattr(request.state, "audit", None)
    session = factory()
    try:
        yield session
        session.commit()
        if ctx is not None and ctx.pending_event_id:
            ctx.recorded_event_id = ctx.pending_event_id
        for callback in session.info.pop(AFTER_COMMIT, ()):
            callback()
    except BaseException:
        session.rollback()
        if ctx is not None:
            ctx.pending_event_id = None
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
