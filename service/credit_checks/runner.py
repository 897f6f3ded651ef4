"""Where the blocking part of a check runs: a worker thread, bounded per process.

A sync FastAPI route runs in the shared threadpool (40 threads). Under load, dozens of
threads then take turns at the GIL and, on SQLite, at the database's single write lock,
whose busy handler sleeps in steps of up to 100 ms: throughput drops and the tail
explodes. The batch route instead makes exactly one thread hop (as a sync route would)
through a limiter of its own, sized for the database: a couple of threads for SQLite,
whose writers also wait on the write gate (``service.db.write_gate``) instead of
sleeping in SQLite's busy handler, and enough for PostgreSQL to overlap round trips.
Single checks have a worker of their own (``single_service.py``), which takes the same
write gate.
Measured with ``bench/check_bench.py`` (see ``bench/RESULTS.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine

from service.db.engine import is_sqlite
from service.db.write_gate import write_gate
from service.state import state_singleton

T = TypeVar("T")

SQLITE_THREADS = 2
SERVER_DB_THREADS = 8


class CheckRunner:
    def __init__(self, engine: Engine) -> None:
        self._threads = SQLITE_THREADS if is_sqlite(engine) else SERVER_DB_THREADS
        self._limiter: anyio.CapacityLimiter | None = None
        self._gate = write_gate(engine)

    def transaction_guard(self) -> AbstractContextManager[Any]:
        """Held around a check's transaction: SQLite's one writer at a time."""
        return self._gate.hold()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # created on the event loop that uses it
            self._limiter = anyio.CapacityLimiter(self._threads)
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self._limiter)


def check_runner(state: Any) -> CheckRunner:
    """The app's runner (``app.state.check_runner``), created on first use."""
    return state_singleton(state, "check_runner", lambda: CheckRunner(state.engine))
