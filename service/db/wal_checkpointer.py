"""SQLite's WAL checkpoints, taken off the writers' path.

By default SQLite checkpoints inside a writer's commit: the commit that takes the
write-ahead log past 1000 pages copies it into the database file, page by page, while
that writer still holds the write gate (``service.db.write_gate``). Under load that was
one commit in ten or so taking 5-13 ms instead of well under one, with every writer of
every process waiting behind it, and with the single checks written on the event loop
(``service.credit_checks.single_service``) the loop itself stalled (bench/RESULTS.md,
the tenth pass).

Here the engine leaves the log alone up to ``WAL_BACKSTOP_PAGES``
(``service.db.engine``: a backstop should this thread fall behind or stop), and a thread
of each API process checkpoints it instead, on a connection of its own, in two steps:

1. every ``interval`` seconds, a ``PASSIVE`` checkpoint outside the gate: it copies what
   the log holds while writers go on appending to it (it neither waits for nor blocks
   readers and writers); nearly all of the copying happens here;
2. once the log is ``restart_frames`` long, a second one inside the gate: with no writer
   of ours appending, it copies the few frames written since the first and completes, so
   the next writer starts the log over from its beginning. Without it the log would only
   grow under steady load (a checkpoint never catches up with writers that never pause).

Two processes' threads never checkpoint at once (SQLite's checkpoint lock; the one that
finds it taken skips its turn).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Engine

from service.db.write_gate import WriteGate, write_gate

log = logging.getLogger("creditshare.db")

INTERVAL_SECONDS = 0.2
RESTART_FRAMES = 1024
"""A log of 4 MiB (4 KiB pages) is completed under the gate, and starts over."""


class WalCheckpointer:
    """``start()``/``stop()``: a daemon thread checkpointing ``database``'s log."""

    def __init__(
        self,
        database: str,
        gate: WriteGate,
        *,
        interval: float = INTERVAL_SECONDS,
        restart_frames: int = RESTART_FRAMES,
    ) -> None:
        self._database = database
        self._gate = gate
        self._interval = interval
        self._restart_frames = restart_frames
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.completed = 0
        """Checkpoints completed under the gate (after each, the log started over)."""

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout=10)

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self._interval):
                try:
                    if connection is None:
                        # timeout=0: a checkpoint lock held by another process means
                        # skip this turn, not wait for it.
                        connection = sqlite3.connect(
                            self._database, timeout=0, isolation_level=None
                        )
                    self.checkpoint_once(connection)
                except sqlite3.Error:
                    log.warning("WAL checkpoint failed", exc_info=True)
                    if connection is not None:
                        connection.close()
                    connection = None
        finally:
            if connection is not None:
                connection.close()

    def checkpoint_once(self, connection: sqlite3.Connection) -> None:
        """Step 1, then step 2 when the log is long enough (see the module docstring)."""
        done = _passive(connection)
        if done is None or done[0] < self._restart_frames:
            return
        with self._gate.hold():
            done = _passive(connection)
        if done is not None and done[1] == done[0]:
            self.completed += 1
        # else a reader still in the log's frames kept it from completing: next turn.


def _passive(connection: sqlite3.Connection) -> tuple[int, int] | None:
    """A ``PASSIVE`` checkpoint: the log's length and how much of it is now in the
    database file, in frames; None if another connection was checkpointing (or the
    database is not in WAL mode)."""
    try:
        busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return None  # another process's checkpoint: its turn
        raise
    if busy or frames < 0:
        return None
    return int(frames), int(copied)


def for_engine(engine: Engine) -> WalCheckpointer | None:
    """The checkpointer of ``engine``'s database: a SQLite file's, named by a plain path
    (the write gate's lock file lies beside it); None otherwise."""
    gate = write_gate(engine)
    database = engine.url.database
    if not gate.enabled or not database or database.startswith("file:"):
        return None
    return WalCheckpointer(database, gate)
