"""Work to do once a request's transaction has committed (framework-free)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

AFTER_COMMIT = "after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the session's transaction has committed (e.g. to tell other nodes)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)
