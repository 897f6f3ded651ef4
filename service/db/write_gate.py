"""One writer at a time on a SQLite database, waiting on a lock rather than polling.

SQLite admits one write transaction at a time. A writer that finds the database locked
polls in SQLite's busy handler, sleeping 1, 2, 5, 10 ... up to 100 ms between tries: with
two API processes and the audit sequencer writing all the time, that polling is where a
request's tail latency came from (p99 of 200-300 ms at 64 connections). The gate makes
the busy writers of this module wait on a lock instead (a thread lock within a process,
``flock`` on a file beside the database across processes), so the next one starts as soon
as the previous one ends. Writers that do not take the gate still work: they poll as before.

On PostgreSQL (row locks, concurrent writers) the gate is a no-op.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from service.db.engine import is_sqlite


class WriteGate:
    """``enabled``: a thread lock at least, and ``flock`` on ``lock_path`` while usable."""

    def __init__(self, lock_path: str | None, *, enabled: bool | None = None) -> None:
        self.enabled = lock_path is not None if enabled is None else enabled
        self._lock_path = lock_path
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0

    def _file(self) -> int | None:
        """The lock file's descriptor for this process (opened lazily; None if it cannot be)."""
        if self._lock_path is None:
            return None
        if self._fd is None or self._fd_pid != os.getpid():
            try:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                # e.g. a read-only directory: writers of this process still take turns on
                # the thread lock; other processes poll in SQLite's busy handler as before.
                self._lock_path = None
                return None
            # Closed when the gate goes (with its engine): apps come and go in one process.
            weakref.finalize(self, os.close, fd)
            self._fd, self._fd_pid = fd, os.getpid()
        return self._fd

    def try_acquire(self) -> bool:
        """Take the gate if nobody holds it, without waiting (then :meth:`release`)."""
        if not self.enabled:
            return True
        if not self._thread_lock.acquire(blocking=False):
            return False
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process holds it
            self._thread_lock.release()
            return False
        except BaseException:
            self._thread_lock.release()
            raise
        return True

    def acquire(self) -> None:
        """Take the gate, waiting (then :meth:`release`, from any thread)."""
        if not self.enabled:
            return
        self._thread_lock.acquire()
        try:
            fd = self._file()
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        if not self.enabled:
            return
        try:
            if self._lock_path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Held around one write transaction (no-op when the gate is disabled)."""
        self.acquire()
        try:
            yield
        finally:
            self.release()


_gates: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def _gate_for(engine: Engine) -> WriteGate:
    """Disabled off SQLite and for a private in-memory database; a thread lock for a
    ``file:`` URI (no plain path to put a lock file beside); thread lock + ``flock`` else."""
    database = engine.url.database or ""
    if not is_sqlite(engine) or database in ("", ":memory:") or "mode=memory" in database:
        return WriteGate(None, enabled=False)
    if database.startswith("file:"):
        return WriteGate(None, enabled=True)
    return WriteGate(f"{database}-writegate")


def write_gate(engine: Engine) -> WriteGate:
    """The engine's gate (one per engine and process): on SQLite a thread lock at least."""
    with _gates_lock:
        gate = _gates.get(engine)
        if gate is None:
            gate = _gate_for(engine)
            _gates[engine] = gate
        return gate
