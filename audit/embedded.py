"""Wiring the audit trail into an API process: the shared ``AuditTrail``, the sealing
backlog probe behind ``/readyz`` and the metrics, and the embedded sequencer thread.

``service.app.create_app`` calls ``install(app.state, runtime)`` once. With
``settings.embedded_sequencer`` (the default, right for one node on SQLite) a
daemon thread seals every ``audit_seal_interval`` seconds; it competes for the
same database lease as ``creditshare worker``, so running workers beside API
nodes is safe: only one sequencer seals at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from audit import repository as repo
from audit.queries import AuditTrail
from audit.sealer import DEFAULT_BATCH, Sequencer, SequencerLoop, Watermark
from service.db.base import utcnow
from service.db.write_gate import write_gate
from service.readiness import Readiness
from service.runtime import Runtime

__all__ = ["BacklogProbe", "EmbeddedSequencer", "install"]

log = logging.getLogger("creditshare.audit")

EMBEDDED_BATCH = 500
"""Events per sealed batch in an API process. A batch reads and hashes its events before
it takes the write gate, then holds the database's write lock while it appends, inserts
and signs (7-10 ms for 500 events); on SQLite every request that writes waits for it, so
batches stay short instead of the worker's 5,000."""
EMBEDDED_PAUSE = 0.005
"""Seconds between two batches of one drain, for the writers that waited meanwhile."""


class BacklogProbe:
    """``() -> (unsealed events, age in seconds of the oldest)``, for readiness and metrics.

    Counts above its own watermark (moved up at most every ``advance_seconds``),
    so a probe costs a scan of recent events, not of the whole log.
    """

    def __init__(
        self,
        runtime: Runtime,
        watermark: Watermark | None = None,
        *,
        advance_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = runtime.sessionmaker
        self._watermark = watermark or Watermark()
        self._advance_seconds = advance_seconds
        self._clock = clock
        self._advanced_at: float | None = None

    def __call__(self) -> tuple[int, float]:
        with self._factory() as session:
            now = self._clock()
            if self._advanced_at is None or now - self._advanced_at >= self._advance_seconds:
                self._advanced_at = now
                self._watermark.advance(session)
            count, oldest = repo.backlog(session, self._watermark.value)
        age = 0.0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds())
        return count, age


class EmbeddedSequencer:
    """The in-process sequencer thread, started and stopped with the app's lifespan."""

    def __init__(self, runtime: Runtime, trail: AuditTrail) -> None:
        settings = runtime.settings
        gate = write_gate(runtime.engine)
        # Short batches only where the database has one writer; elsewhere the default
        # batch (and ten times fewer checkpoints to sign and later verify).
        self.sequencer = Sequencer(
            runtime.sessionmaker,
            runtime.key_store,
            trail.default_origin,
            batch_size=EMBEDDED_BATCH if gate.enabled else DEFAULT_BATCH,
            pause=EMBEDDED_PAUSE if gate.enabled else 0.0,
            write_guard=gate.hold,
        )
        self.loop = SequencerLoop(self.sequencer, settings.audit_seal_interval)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self.loop.run, name="audit-sequencer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at the next batch boundary and give the lease up."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.loop.stop()
        thread.join(timeout=30)
        if thread.is_alive():
            log.warning("audit sequencer did not stop within 30 s")


def install(app_state: Any, runtime: Runtime) -> None:
    """Give the app its ``audit_trail``, a backlog-aware ``readiness`` and, when configured,
    the embedded sequencer (appended to ``background_starters``/``background_stoppers``)."""
    trail = AuditTrail.for_public_url(
        runtime.sessionmaker, runtime.key_store, runtime.settings.public_url
    )
    app_state.audit_trail = trail
    app_state.readiness = Readiness(runtime, backlog=BacklogProbe(runtime))
    if runtime.settings.embedded_sequencer:
        embedded = EmbeddedSequencer(runtime, trail)
        app_state.audit_sequencer = embedded
        app_state.background_starters.append(embedded.start)
        app_state.background_stoppers.append(embedded.stop)
