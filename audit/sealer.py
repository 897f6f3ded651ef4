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

Finding what to seal costs O(new events) per poll, not O(the grace window), thanks
to a scan cursor (``audit.cursor.ScanCursor``) kept in memory by each sequencer:
``high``, and the gap ranges below it that it has not seen sealed. Every
committed event between the watermark and ``high`` is sealed unless its pk is in
a gap, so a poll probes only the gaps and above ``high`` (still with the
``NOT EXISTS`` anti-join, one index probe per row). Why this cannot lose or
double an event:

* it is built by one read, outside the write lock: ``high`` is the highest sealed
  pk above the watermark and every hole below it (missing or unsealed pks) is a
  gap, so every pk it considers done was seen sealed;
* after a committed batch -- never before -- the pks it sealed leave the gaps,
  and the pks it jumped over above the old ``high`` become gaps: a batch reads
  the lowest candidates in pk order, so those were invisible (not committed yet,
  rolled back) or sealed by someone else, and the lower pk of a transaction that
  commits late is in a gap, sealed by the next poll;
* a gap is dropped after the watermark's grace, the same assumption the watermark
  makes (no transaction stays open that long); past a bound on their number, the
  gaps merge into one range, which costs a longer probe but loses nothing;
* it is forgotten, and rebuilt by the next poll, after any error in a batch,
  whenever the lease is lost or lapsed, when the watermark is reset, and every
  ``full_scan_seconds``: the safety net that finds, late, an event the cursor
  had given up on, as the watermark's own rescan does below it;
* which events it proposes only narrows what a batch reads: the lock, the fence
  and the constraints above still decide what is committed, and the ``NOT
  EXISTS`` (and the re-check under the lock, below) keeps an event that someone
  else sealed out of the batch.

The watermark follows the cursor (what it knew was settled a grace ago), so a
rebuild rereads only the recent past; its O(window) queries run at build time only.

Outside the write gate
----------------------
On SQLite every request that writes waits while a batch holds the write gate
(``service.db.write_gate``), so the batch does as little as it can there. Before
taking it, in a read-only session closed before the hashing, a batch reads its
candidates and computes their leaf hashes -- nearly all of its CPU per event.
Inside the gate (lock, fence, resume) it only re-checks that the candidates are
still unsealed, appends their leaves to the compact range in pk order, inserts the
entries and the checkpoint, and commits. The lease fence still comes first there:
a batch prepared by a sequencer that has lost the lease meanwhile is abandoned.
Hashing early is safe because:

* a leaf depends on the event alone: the hashed document is ``event_document``'s,
  which has no ``seq`` (``audit.documents``; ``audit.canonical`` also drops a
  top-level ``seq``), so the leaf does not depend on the position in the log,
  decided under the lock;
* events never change once committed: triggers refuse every UPDATE and DELETE on
  ``audit_events`` (``audit_events_no_update`` and ``_no_delete`` on SQLite,
  ``audit_events_append_only`` and ``_no_truncate`` on PostgreSQL: migration
  0001), and the application role of ``docs/audit.md`` has no such grant; so the
  row hashed before the gate is the row sealed. (Someone who can drop the
  triggers can as well edit an event after it was sealed; verification reports
  both the same way.);
* only committed events are read, and one cannot disappear (no DELETE, and
  ``audit_log.event_pk`` references it); one that commits after the read is left
  to the next batch or poll, as an event that commits late always was;
* what another sequencer sealed between the read and the lock is dropped under
  the lock (``repository.sealed_among`` on the batch's pks; under the lock the
  answer holds until the commit), and the unique ``event_pk`` still stands
  behind that. A batch that drops some seals fewer; its cursor counts their pks
  as gaps, which the next poll probes and finds sealed.

The work per event is also lighter than through the ORM (a batch's CPU competes
with the API's for the GIL): candidates come as ``repository.EventRecord`` (a Core
select, each value converted once), are hashed by
``documents.stored_event_leaf_hash`` (the same bytes as
``event_leaf_hash(event_document(row))``: ``tests/audit/test_seal_fast_path.py``),
and the entries go in through ``BulkInsert``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from audit import repository as repo
from audit.cursor import MAX_GAP_RANGES, ScanCursor
from audit.documents import stored_event_leaf_hash
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
DEFAULT_FULL_SCAN_SECONDS: Final = 60.0


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


YIELD_EVERY = 64
"""Events hashed between two voluntary releases of the GIL (``time.sleep(0)``) while a batch
is prepared. A batch hashes a second's events at once (thousands, tens of ms of CPU); an
embedded sequencer doing that in one go held its process's GIL against the event loop and
the check groups for up to a switch interval at a time, which was the p99 on PostgreSQL
(bench/RESULTS.md, sixth pass: lower p99 in 9 of 13 alternating rounds, the same
throughput). Outside the write gate, so it holds no lock while it yields."""


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
            self._reset_if_due()
            return self._value

    def _reset_if_due(self) -> None:
        """The last resort: back to zero every ``rescan_seconds`` (called with the lock held)."""
        if self._clock() - self._reset_at > self._rescan:
            self._value = 0
            self._reset_at = self._clock()

    @property
    def grace_seconds(self) -> float:
        """How long a transaction may stay open (the scan cursor drops its gaps after this)."""
        return self._grace.total_seconds()

    def advance(self, session: Session) -> int:
        """Move past events sealed more than the grace ago (read-only queries on ``session``)."""
        current = self.value
        lowest = repo.lowest_unsealed_pk(session, current)
        settled = repo.highest_settled_pk(session, current, lowest, utcnow() - self._grace)
        with self._lock:
            if settled is not None and settled > self._value:
                self._value = settled
            return self._value

    def raise_to(self, pk: int, *, floor: int) -> int:
        """Move up to ``pk``, which a scan cursor built on this watermark at ``floor`` knew was
        settled a grace ago (no query: the same lag as ``advance``, which passes events
        sealed more than the grace ago).

        Ignored if the watermark has dropped below ``floor`` since (the periodic
        reset): the rescan from zero it asks for must not be undone by a cursor
        that started above it.
        """
        with self._lock:
            self._reset_if_due()
            if self._value >= floor and pk > self._value:
                self._value = pk
            return self._value


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one batch did: events sealed, the resulting log size (0, 0: nothing done) and
    the highest pk it sealed."""

    sealed: int
    size: int
    last_pk: int = 0


@dataclass(frozen=True, slots=True)
class _Committed:
    """What a batch transaction did, for after its commit: the result, the lease's new
    expiry (when fenced) and the pks it sealed, in order."""

    result: BatchResult
    lease_until: datetime | None
    pks: list[int]


@dataclass(frozen=True, slots=True)
class _Probe:
    """Where one batch looks: the cursor's gaps and everything above its ``high`` (``cursor``
    None: the old scan above ``after_pk``)."""

    cursor: ScanCursor | None
    high: int = 0
    ranges: tuple[tuple[int, int], ...] = ()
    after_pk: int = 0


@dataclass(frozen=True, slots=True)
class _Leaves:
    """Candidates read and hashed before the gate, in pk order: ``pks[i]``'s leaf hash is
    ``hashes[i]`` (``hexes[i]`` in hex). Parallel lists rather than an object per event:
    fewer objects alive through a batch for the garbage collector to walk."""

    pks: list[int]
    hashes: list[bytes]
    hexes: list[str]

    def without(self, pks: set[int]) -> _Leaves:
        """The same leaves but those of ``pks``."""
        kept = [i for i, pk in enumerate(self.pks) if pk not in pks]
        return _Leaves(
            [self.pks[i] for i in kept],
            [self.hashes[i] for i in kept],
            [self.hexes[i] for i in kept],
        )


class Sequencer:
    """Seals batches of events. Thread-safe only in the sense that each call uses its own session.

    ``use_lease``: seal only while holding the ``audit-sequencer`` lease
    (``acquire_lease`` first); without it, only the lock and constraints keep
    concurrent sequencers apart (tests, one-off tools).
    ``before_commit(first_seq, last_seq)`` runs inside the batch transaction
    just before the commit -- a test hook to simulate a crash mid-batch.
    Its scan cursor (see the module docstring) is shared by the calls; its
    updates are atomic, and only ever shrink what is left to look at by what
    a committed batch sealed.
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
        full_scan_seconds: float = DEFAULT_FULL_SCAN_SECONDS,
        max_gap_ranges: int = MAX_GAP_RANGES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``pause``: seconds to wait between two full batches of one drain, so that other
        writers waiting for the database's lock get it in between (SQLite); ``write_guard``:
        held around each batch's transaction (``service.db.write_gate`` on SQLite).
        ``full_scan_seconds``: the scan cursor is rebuilt from the watermark at least this
        often (the safety net for an event it could not know of); ``max_gap_ranges``: its
        bound on gap ranges; ``clock``: monotonic seconds, for the cursor's ages."""
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
        self.full_scan_seconds = full_scan_seconds
        self.max_gap_ranges = max_gap_ranges
        self._clock = clock
        self._cursor: ScanCursor | None = None
        self._lease_until: datetime | None = None

    # ---- leadership -----------------------------------------------------------------------
    def acquire_lease(self) -> bool:
        """Take (or renew) the lease if it is free, expired or ours; True when we hold it."""
        now = utcnow()
        until = now + timedelta(seconds=self.lease_seconds)
        with self.session_factory() as session, session.begin():
            held = repo.take_lease(session, LEASE_NAME, self.holder, until, now)
        self._note_lease(held, now, until)
        return held

    def release_lease(self) -> None:
        with self.session_factory() as session, session.begin():
            repo.release_lease(session, LEASE_NAME, self.holder, utcnow())
        self._note_lease(False, utcnow(), None)

    def _note_lease(self, held: bool, now: datetime, until: datetime | None) -> None:
        """Forget the scan cursor unless the lease stayed ours without a break.

        While another holder had it, it sealed events our cursor never saw
        sealed: harmless to the invariant (gaps only shrink on what *we* saw),
        but the cursor would fill up with their pks; a rebuild is cheaper.
        """
        if not held or self._lease_until is None or now >= self._lease_until:
            self._cursor = None
        self._lease_until = until if held else None

    # ---- the scan cursor ------------------------------------------------------------------
    @property
    def cursor(self) -> ScanCursor | None:
        """The current scan cursor (None until the next poll builds one)."""
        return self._cursor

    def _live_cursor(self) -> ScanCursor | None:
        """The cursor if it may still be used (its expired gaps dropped), else None.

        It is too old after ``full_scan_seconds``, and void once the watermark
        fell below the floor it was built on (the watermark's periodic reset
        asks for a rescan from zero).
        """
        cursor = self._cursor
        if cursor is None:
            return None
        now = self._clock()
        if now - cursor.built_at >= self.full_scan_seconds or self.watermark.value < cursor.floor:
            self._cursor = None
            return None
        cursor.expire(now, self.watermark.grace_seconds)
        return cursor

    def _ensure_cursor(self, session: Session) -> ScanCursor:
        """The live cursor, or a new one read on ``session`` (reads only: no lock, no gate)."""
        cursor = self._live_cursor()
        if cursor is None:
            cursor = self._build_cursor(session)
            self._cursor = cursor
        return cursor

    def _build_cursor(self, session: Session) -> ScanCursor:
        """Advance the watermark (the only O(window) queries while cursors are in use), then
        take ``high`` as the highest sealed pk above it and the holes below as gaps."""
        floor = self.watermark.advance(session)
        high = repo.highest_sealed_pk(session, floor)
        holes = repo.unsealed_pk_ranges(session, floor, high)
        cursor = ScanCursor.build(
            floor=floor, high=high, holes=holes, now=self._clock(), max_ranges=self.max_gap_ranges
        )
        cursor.expire(self._clock(), self.watermark.grace_seconds)
        log.debug("scan cursor built", extra={"high": high, "gaps": len(cursor.gaps)})
        return cursor

    def _settle_watermark(self) -> None:
        """Move the watermark up after sealing or an idle look: to what the cursor knew was
        settled a grace ago when there is one (no query), else with ``Watermark.advance``."""
        cursor = self._live_cursor()
        if cursor is not None:
            settled = cursor.settled_at(self._clock() - self.watermark.grace_seconds)
            if settled is not None:
                self.watermark.raise_to(settled, floor=cursor.floor)
            return
        with self.session_factory() as session:
            self.watermark.advance(session)

    def _probe_in(self, session: Session, after_pk: int) -> _Probe:
        """Where the next batch looks: the cursor (built now if needed, outside any lock), or
        the old scan when asked to look above what the cursor knows (``after_pk > high``)."""
        cursor = self._ensure_cursor(session)
        high, ranges = cursor.probe()
        if after_pk > high:
            return _Probe(None, after_pk=max(after_pk, self.watermark.value))
        return _Probe(cursor, high, tuple(ranges))

    # ---- sealing --------------------------------------------------------------------------
    def pending(self) -> bool:
        """Is anything waiting to be sealed? (A read, so an idle loop takes no write lock.)

        It probes the cursor's gaps and what was written above its ``high``
        (building the cursor first if there is none). When nothing is
        waiting, the watermark moves up to what the cursor knew was settled a
        grace ago, so that a rebuild only rereads the recent past.
        """
        with self.session_factory() as session:
            high, ranges = self._ensure_cursor(session).probe()
            if repo.has_unsealed_in(session, ranges, high):
                return True
        self._settle_watermark()
        return False

    def seal_batch(self, after_pk: int = 0) -> BatchResult:
        """Seal up to ``batch_size`` events in one transaction.

        Returns ``BatchResult(0, 0)`` when there was nothing to seal or the lease
        is no longer ours. It looks in the scan cursor's gaps and above its
        ``high`` (``drain`` passes as ``after_pk`` the last pk of its previous
        batch, never above ``high``); asked for an ``after_pk`` above ``high``,
        it scans above ``after_pk`` and the watermark as before the cursor.
        Raises ``SealingError`` when the stored log is not consistent with its
        latest checkpoint; database errors propagate after the rollback (a
        conflicting sequencer surfaces as ``IntegrityError``). An error or a
        lost lease drops the cursor; it learns from a batch only once committed.
        """
        kid, private_key = self._signer()
        try:
            probe, leaves = self._prepare(after_pk)
            with self.write_guard(), self.session_factory() as session, session.begin():
                done = self._seal_in(session, leaves, kid, private_key)
        except BaseException:
            self._cursor = None
            raise
        if done is None:  # fenced out: another holder
            self._note_lease(False, utcnow(), None)
            return BatchResult(0, 0)
        if done.lease_until is not None:
            self._lease_until = done.lease_until
        if probe.cursor is not None and self._cursor is probe.cursor:
            probe.cursor.record(probe.high, done.pks, self._clock())
        if done.pks:
            metrics.AUDIT_SEALED.inc(len(done.pks))
        return done.result

    def _signer(self) -> tuple[str, Ed25519PrivateKey]:
        signer = self.key_store.view().audit_signer
        if signer is None:
            self.key_store.refresh()
            signer = self.key_store.view().audit_signer
            if signer is None:
                raise SealingError("no active audit signing key: run `creditshare db upgrade`")
        return signer

    def _prepare(self, after_pk: int) -> tuple[_Probe, _Leaves]:
        """Before the gate: where to look, the candidates found there (in pk order) and their
        leaf hashes. Reads only, on a session closed before the hashing; nothing here
        depends on the log's state (see "Outside the write gate" in the module docstring)."""
        with self.session_factory() as session:
            probe = self._probe_in(session, after_pk)
            records = self._candidates(session, probe)
        leaves = _Leaves([], [], [])
        for n, record in enumerate(records, start=1):  # each record is dropped once hashed
            if n % YIELD_EVERY == 0:
                time.sleep(0)  # let the request threads of this process have the GIL
            leaf = stored_event_leaf_hash(record)
            leaves.pks.append(record.pk)
            leaves.hashes.append(leaf)
            leaves.hexes.append(leaf.hex())
        return probe, leaves

    def _seal_in(
        self, session: Session, leaves: _Leaves, kid: str, private_key: Ed25519PrivateKey
    ) -> _Committed | None:
        """The batch transaction, inside the gate: lock, fence, resume, drop what was sealed
        meanwhile, append and sign (None: the lease is no longer ours). The caller's
        ``session.begin()`` commits it."""
        now = utcnow()
        repo.lock_sequencer(session)
        until: datetime | None = None
        if self.use_lease:
            until = now + timedelta(seconds=self.lease_seconds)
            if not repo.fence_lease(session, LEASE_NAME, self.holder, until, now):
                log.warning("lease lost: batch abandoned", extra={"holder": self.holder})
                return None
        rng, origin = self._resume(session, self.origin)
        sealed = repo.sealed_among(session, leaves.pks)
        if sealed:  # by another sequencer since we read them (no longer under the lease)
            leaves = leaves.without(sealed)
        if not leaves.pks:
            return _Committed(BatchResult(0, rng.size), until, [])
        first = rng.size + 1
        rng.extend(leaves.hashes)
        sealed_at = utcnow()
        repo.insert_entries(session, first, leaves.pks, leaves.hexes, sealed_at)
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
        pks = leaves.pks
        return _Committed(BatchResult(len(pks), rng.size, pks[-1]), until, pks)

    def _candidates(self, session: Session, probe: _Probe) -> Iterator[repo.EventRecord]:
        """The lowest unsealed events where ``probe`` says to look, in pk order."""
        if probe.cursor is None:
            return repo.unsealed_events(session, probe.after_pk, self.batch_size)
        return repo.unsealed_events_in(session, probe.ranges, probe.high, self.batch_size)

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

        Each batch looks in the scan cursor's gaps and above its ``high``, which
        follows the batches, so a long backlog is not rescanned from the start
        every batch, and an event that commits meanwhile with a lower pk is in a
        gap: the next batch or poll finds it. (Without a cursor, each batch after
        the first only looks above the last pk of the one before.) At the end the
        watermark moves up to what is known settled.
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
            self._settle_watermark()
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
