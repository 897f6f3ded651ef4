"""The policy in force, compiled once per version and shared by every request.

The hot path calls :meth:`PolicyCache.current`, which is a couple of attribute reads while
the cached version is fresh. At most once per ``ttl`` (1 s) one caller asks the database
for ``max(version)`` and recompiles only if that changed, so another node's ``PUT`` is in
force here within about a second, and this node's own at once (:meth:`invalidate` after
commit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.models import VerdictPolicy
from service.policy import repository
from service.policy.rules import RawMatrix, RawStatuses, Rules, compile_rules, split_storage_form
from service.problems import ProblemError
from service.state import state_singleton

DEFAULT_TTL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    version: int
    created_at: datetime
    created_by: str
    matrix: RawMatrix
    registration_status: RawStatuses
    rules: Rules

    @property
    def version_label(self) -> str:
        """The version as checks quote it (``policy_version``)."""
        return str(self.version)


def snapshot_of(row: VerdictPolicy) -> PolicySnapshot:
    raw: Mapping[str, object] = row.rules
    matrix, statuses = split_storage_form(raw)
    return PolicySnapshot(
        version=row.version,
        created_at=row.created_at,
        created_by=row.created_by,
        matrix=matrix,
        registration_status=statuses,
        rules=compile_rules(raw),
    )


class PolicyCache:
    def __init__(
        self,
        session_factory: Callable[[], Session],
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: PolicySnapshot | None = None
        self._fresh_until = float("-inf")

    def current(self) -> PolicySnapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._clock() < self._fresh_until:
            return snapshot
        with self._lock:
            if self._snapshot is not None and self._clock() < self._fresh_until:
                return self._snapshot
            return self._reload()

    def is_fresh(self) -> bool:
        """Whether :meth:`current` would answer without asking the database."""
        return self._snapshot is not None and self._clock() < self._fresh_until

    def invalidate(self) -> None:
        """Forget freshness: the next caller re-reads the version (after a local PUT)."""
        self._fresh_until = float("-inf")

    def _reload(self) -> PolicySnapshot:
        with self._session_factory() as session:
            version = repository.current_version(session)
            snapshot = self._snapshot
            if version is None:
                raise ProblemError("service-unavailable")  # no policy: never guess a verdict
            if snapshot is None or snapshot.version != version:
                row = repository.get(session, version)
                if row is None:  # pragma: no cover - rows are never deleted
                    raise ProblemError("service-unavailable")
                snapshot = snapshot_of(row)
        self._snapshot = snapshot
        self._fresh_until = self._clock() + self._ttl
        return snapshot


def policy_cache(state: Any) -> PolicyCache:
    """The app's cache (``app.state.policy_cache``), created on first use."""
    return state_singleton(state, "policy_cache", lambda: PolicyCache(state.sessionmaker))
