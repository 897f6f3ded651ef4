"""The sequencer: gives every audit event its gapless ``seq`` and signs tree heads.

Modelled on Trillian's sequencer: writers only append events; one elected
sequencer picks unsealed events in batches, appends one ``audit_log`` row per
event (its ``seq`` and RFC 6962 leaf hash) and one signed checkpoint per batch,
all in a single transaction.

Safety does not rest on the election alone:

* a batch starts by taking a lock -- ``pg_advisory_xact_lock`` on PostgreSQL,
  the database write lock on SQLite -- and, when running under the lease, by
  extending the lease *only if we still hold it* (a fencing check: a sequencer
  that stalled past its lease and was replaced abandons its batch);
* the log continues from the latest checkpoint's stored frontier, which must
  reproduce that checkpoint's root and size, so a batch never builds on a log it
  does not recognise;
* the primary key on ``seq`` and the unique ``event_pk`` make any race that
  slips through fail (the batch rolls back and is retried) instead of leaving
  a duplicate or a gap.

A crash at any point before the commit leaves nothing behind; the next batch,
by this process or another, starts again from the last committed checkpoint.

``seq`` order is sealing order: events are picked in ``pk`` order, but one whose
transaction commits late simply gets a later ``seq``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Final
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit import repository as repo
from audit.canonical import event_leaf_hash
from audit.documents import event_document
from audit.merkle import CompactRange
from audit.note import format_checkpoint, sign_note
from auth.keys import KeyStore
from service import metrics
from service.db.base import utcnow

__all__ = [
    "LEASE_NAME",
    "BatchResult",
    "SealingError",
    "Sequencer",
    "SequencerLoop",
    "Watermark",
    "log_origin",
    "new_holder",
]

log = logging.getLogger("creditshare.audit.sealer")

LEASE_NAME: Final = "audit-sequencer"
DEFAULT_BATCH: Final = 5000
DEFAULT_LEASE_SECONDS: Final = 10.0


def log_origin(public_url: str) -> str:
    """The checkpoint origin (and note key name): ``<host[:port]>/creditshare/audit``."""
    parts = urlsplit(public_url)
    host = (parts.hostname or "localhost").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{host}/creditshare/audit"


def new_holder() -> str:
    """A lease holder name unique to this process and sequencer: ``host:pid:random``."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"


class SealingError(RuntimeError):
    """The log in the database is not one this sequencer can extend (it refuses to seal)."""


class Watermark:
    """A pk at or below which every event is known to be sealed, to keep the unsealed scan short.

    Finding unsealed events is an anti-join (``NOT EXISTS``) that would scan the
    whole table; with the watermark it only scans the tail. An event's pk is
    allocated before its transaction commits, so a lower pk can appear after
    higher ones were sealed. But every lower pk was allocated before event
    ``P`` was sealed, so once ``P`` has been sealed for ``grace_seconds`` (longer
    than any transaction stays open) no lower pk can still appear: the watermark
    only passes such events. The sealing time is the sequencer's clock, not the
    writers' (whose ``occurred_at`` a skewed node could set in the past). As a
    last resort the watermark is reset to zero every ``rescan_seconds``.
    """

    def __init__(
        self,
        *,
        grace_seconds: float = 300.0,
        rescan_seconds: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grace = timedelta(seconds=grace_seconds)
        self._rescan = rescan_seconds
        self._clock = clock
        self._value = 0
        self._reset_at = clock()
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        with self._lock:
            if self._clock() - self._reset_at > self._rescan:
                self._value = 0
                self._reset_at = self._clock()
            return self._value

    def advance(self, session: Session) -> int:
        """Move past events sealed more than the grace ago (read-only queries on ``session``)."""
        current = self.value
        lowest = repo.lowest_unsealed_pk(session, current)
        settled = repo.highest_settled_pk(session, current, lowest, utcnow() - self._grace)
        with self._lock:
            if settled is not None and settled > self._value:
                self._value = settled
            return self._value


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: events sealed, the resulting log size (0, 0: nothing done) and
    the highest pk it sealed."""

    sealed: int
    size: int
    last_pk: int = 0


class Sequencer:
    """Seals batches of events. Thread-safe only in the sense that each call uses its own session.

    ``use_lease``: seal only while holding the ``audit-sequencer`` lease
    (``acquire_lease`` first); without it, only the lock and constraints keep
    concurrent sequencers apart (tests, one-off tools).
    ``before_commit(first_seq, last_seq)`` runs inside the batch transaction
    just before the commit -- a test hook to simulate a crash mid-batch.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        key_store: KeyStore,
        origin: str,
        *,
        batch_size: int = DEFAULT_BATCH,
        holder: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        use_lease: bool = True,
        watermark: Watermark | None = None,
        before_commit: Callable[[int, int], None] | None = None,
        pause: float = 0.0,
        write_guard: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        """``pause``: seconds to wait between two full batches of one drain, so that other
        writers waiting for the database's lock get it in between (SQLite); ``write_guard``:
        held around each batch's transaction (``service.db.write_gate`` on SQLite)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.session_factory = session_factory
        self.key_store = key_store
        self.origin = origin
        self.batch_size = batch_size
        self.pause = pause
        self.write_guard = write_guard or nullcontext
        self.holder = holder or new_holder()
        self.lease_seconds = lease_seconds
        self.use_lease = use_lease
        self.watermark = watermark or Watermark()
        self.before_commit = before_commit

    # ---- leadership -----------------------------------------------------------------------
    def acquire_lease(self) -> bool:
        """Take (or renew) the lease if it is free, expired or ours; True when we hold it."""
        now = utcnow()
        with self.session_factory() as session, session.begin():
            return repo.take_lease(
                session, LEASE_NAME, self.holder, now + timedelta(seconds=self.lease_seconds), now
            )

    def release_lease(self) -> None:
        with self.session_factory() as session, session.begin():
            repo.release_lease(session, LEASE_NAME, self.holder, utcnow())

    # ---- sealing --------------------------------------------------------------------------
    def pending(self) -> bool:
        """Is anything waiting to be sealed? (A read, so an idle loop takes no write lock.)

        When nothing is, the watermark moves up, so that an idle loop's next look
        only scans events written since.
        """
        with self.session_factory() as session:
            if repo.has_unsealed(session, self.watermark.value):
                return True
            self.watermark.advance(session)
            return False

    def seal_batch(self, after_pk: int = 0) -> BatchResult:
        """Seal up to ``batch_size`` events in one transaction.

        Returns ``BatchResult(0, 0)`` when there was nothing to seal or the lease
        is no longer ours. Only events above ``after_pk`` (and the watermark)
        are looked at: ``drain`` passes the last pk of its previous batch. Raises ``SealingError`` when the stored log is not
        consistent with its latest checkpoint; database errors propagate after
        the rollback (a conflicting sequencer surfaces as ``IntegrityError``).
        """
        signer = self.key_store.view().audit_signer
        if signer is None:
            self.key_store.refresh()
            signer = self.key_store.view().audit_signer
            if signer is None:
                raise SealingError("no active audit signing key: run `creditshare db upgrade`")
        kid, private_key = signer
        after_pk = max(after_pk, self.watermark.value)
        with self.write_guard(), self.session_factory() as session, session.begin():
            now = utcnow()
            repo.lock_sequencer(session)
            if self.use_lease and not repo.fence_lease(
                session, LEASE_NAME, self.holder, now + timedelta(seconds=self.lease_seconds), now
            ):
                log.warning("lease lost: batch abandoned", extra={"holder": self.holder})
                return BatchResult(0, 0)
            rng, origin = self._resume(session, self.origin)
            rows = repo.unsealed_events(session, after_pk, self.batch_size)
            if not rows:
                return BatchResult(0, rng.size)
            first = rng.size + 1
            sealed_at = utcnow()
            entries: list[dict[str, object]] = []
            for row in rows:
                leaf = event_leaf_hash(event_document(row))
                rng.append(leaf)
                entries.append(
                    {
                        "seq": rng.size,
                        "event_pk": row.pk,
                        "leaf_hash": leaf.hex(),
                        "sealed_at": sealed_at,
                    }
                )
            repo.insert_entries(session, entries)
            root = rng.root()
            note = sign_note(format_checkpoint(origin, rng.size, root), origin, private_key)
            repo.insert_checkpoint(
                session,
                size=rng.size,
                root_hash=root.hex(),
                frontier=rng.to_hex(),
                note=note,
                key_id=kid,
                created_at=sealed_at,
            )
            if self.before_commit is not None:
                self.before_commit(first, rng.size)
        metrics.AUDIT_SEALED.inc(len(rows))
        return BatchResult(len(rows), rng.size, rows[-1].pk)

    @staticmethod
    def _resume(session: Session, default_origin: str) -> tuple[CompactRange, str]:
        """The tree as of the latest checkpoint, checked against the stored log, and the
        log's origin (kept from its first checkpoint even if the public URL changed)."""
        head = repo.latest_checkpoint(session)
        size = repo.log_size(session)
        if head is None:
            if size:
                raise SealingError(f"the log holds {size} entries but no checkpoint")
            return CompactRange(), default_origin
        if size != head.size:
            raise SealingError(
                f"the log holds {size} entries but the latest checkpoint seals {head.size}"
            )
        try:
            rng = CompactRange.from_hex(head.size, head.frontier)
        except ValueError as exc:
            raise SealingError(f"checkpoint {head.size} has a malformed frontier") from exc
        if rng.root().hex() != head.root_hash:
            raise SealingError(f"checkpoint {head.size}: the frontier does not give its root")
        origin = head.note.split("\n", 1)[0]
        if not origin:
            raise SealingError(f"checkpoint {head.size} has no origin line")
        return rng, origin

    def drain(self, stop: threading.Event | None = None) -> int:
        """Seal full batches until the backlog is empty (or ``stop`` is set); returns the count.

        A conflicting sequencer (constraint violation, SQLite busy) ends the
        drain quietly; the next loop retries from the committed state.

        Each batch after the first only looks above the last pk of the one
        before (so a long backlog is not rescanned from the start every batch);
        an event that commits meanwhile with a lower pk is found by the next drain,
        which starts again from the watermark.
        """
        total = 0
        after_pk = 0
        while stop is None or not stop.is_set():
            try:
                result = self.seal_batch(after_pk)
            except (IntegrityError, OperationalError) as exc:
                log.warning(
                    "batch conflicted with another writer, will retry",
                    extra={"error": type(exc).__name__, "holder": self.holder},
                )
                break
            total += result.sealed
            after_pk = max(after_pk, result.last_pk)
            if result.sealed:
                log.debug("sealed batch", extra={"events": result.sealed, "size": result.size})
            if result.sealed < self.batch_size:
                break
            if self.pause:
                time.sleep(self.pause)
        if total:
            with self.session_factory() as session:
                self.watermark.advance(session)
        return total


class SequencerLoop:
    """Runs a ``Sequencer`` under the lease every ``interval`` seconds until stopped.

    Used by the embedded thread of the API and by ``creditshare worker``. Each
    round renews (or tries to take) the lease, then drains the backlog; a stop
    request takes effect at the next batch boundary. Errors are logged and
    retried; they never end the loop.
    """

    def __init__(self, sequencer: Sequencer, interval: float) -> None:
        self.sequencer = sequencer
        self.interval = interval
        self.stop_event = threading.Event()
        self.leader = False
        self.last_error: str | None = None

    def run_once(self) -> int:
        seq = self.sequencer
        try:
            held = seq.acquire_lease()
            if held != self.leader:
                log.info(
                    "became audit sequencer" if held else "standing by: another node seals",
                    extra={"holder": seq.holder},
                )
                self.leader = held
            if not held or not seq.pending():
                return 0
            sealed = seq.drain(self.stop_event)
            self.last_error = None
            return sealed
        except Exception as exc:
            self.last_error = type(exc).__name__
            log.exception("sealing failed", extra={"holder": seq.holder})
            return 0

    def run(self) -> None:
        log.info("audit sequencer started", extra={"holder": self.sequencer.holder})
        while not self.stop_event.is_set():
            self.run_once()
            self.stop_event.wait(self.interval)
        if self.leader:
            try:
                self.sequencer.release_lease()
            except Exception:
                log.exception("could not release the sequencer lease")
        log.info("audit sequencer stopped", extra={"holder": self.sequencer.holder})

    def stop(self) -> None:
        self.stop_event.set()
