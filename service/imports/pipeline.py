"""The import pipeline: NDJSON lines in, merchants and records upserted in batches.

Used by ``POST /v1/admin/imports``, ``creditshare import`` and ``creditshare demo seed``.

* Streaming: lines are parsed and stored a batch at a time (``batch_lines`` per
  transaction), so memory does not grow with the input (but see dry runs below).
* Set-based: per batch, one query finds the stored merchants, one per source finds
  the stored records, then new rows go in with one ``executemany`` insert per table and
  changed ones with one ``executemany`` update; record history rows likewise.
* Idempotent: merchants are keyed by ``uscc``, records by ``(source,
  source_record_id)``. A line identical to what is stored counts as ``unchanged`` and
  writes nothing; a changed record gets a new version and a history row.
* A bad line never stops or corrupts good ones: it is rejected by line number with
  field errors (never its content). If a batch still fails in the database (e.g. a
  concurrent import inserted the same key), it is retried once, then stored line by
  line so that only the offending line is rejected.
* Records may come before their merchant: a record whose merchant is neither stored
  nor yet seen is parked in a temporary file (spilled to disk beyond 1 MiB) and
  retried at the end; only then is it rejected as an unknown merchant.
* Dry run: the same checks and counts, nothing written. To count a key that appears
  twice in one file correctly without writing, a dry run remembers the new and
  changed keys it has seen (a few dozen bytes each), so its memory grows with the
  number of such keys, unlike a real import.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from schemas.imports import ImportResult, KindCounts, RejectedLine
from schemas.problems import FieldError
from schemas.uscc import USCCError, uscc_problem_reason
from service.crypto import KeyRing
from service.db.base import utcnow
from service.ids import new_id
from service.imports.lines import (
    MerchantItem,
    Parsed,
    RawLine,
    RecordItem,
    Rejection,
    parse,
    parse_object,
)
from service.merchants import repository as repo
from service.merchants.rows import (
    RecordState,
    codec_for,
    merchant_state,
    record_state,
    snapshot,
    stored_record_state,
)

BATCH_LINES = 1000
MAX_REPORTED = 1000
UNKNOWN_MERCHANT = "Unknown merchant: neither in the registry nor earlier in this file"
NOT_STORED = "Could not be stored (conflicts with stored data)"
_CHECKSUM = str(USCCError("checksum"))

Item = MerchantItem | RecordItem
RecordKey = tuple[str, str]


@dataclass
class Counts:
    accepted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.updated += other.updated
        self.unchanged += other.unchanged


@dataclass
class ImportReport:
    dry_run: bool
    merchants: Counts = field(default_factory=Counts)
    records: Counts = field(default_factory=Counts)
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0
    lines: int = 0
    legacy_lines: list[int] = field(default_factory=list)
    legacy_count: int = 0

    @property
    def accepted(self) -> int:
        return self.merchants.accepted + self.records.accepted

    @property
    def updated(self) -> int:
        return self.merchants.updated + self.records.updated

    @property
    def unchanged(self) -> int:
        return self.merchants.unchanged + self.records.unchanged

    def reject(self, rejection: Rejection, cap: int) -> None:
        self.rejected_count += 1
        self.rejected.append(rejection)
        if len(self.rejected) > 2 * cap:
            self.trim(cap)

    def trim(self, cap: int) -> None:
        """Keep the first ``cap`` rejections (and legacy lines) by line number."""
        self.rejected.sort(key=lambda r: r.number)
        del self.rejected[cap:]
        self.legacy_lines.sort()
        del self.legacy_lines[cap:]

    def note_legacy(self, number: int, cap: int) -> None:
        self.legacy_count += 1
        self.legacy_lines.append(number)
        if len(self.legacy_lines) > 2 * cap:
            self.trim(cap)

    def counts(self) -> dict[str, object]:
        """Counts only: what the audit trail keeps of an import."""
        return {
            "dry_run": self.dry_run,
            "lines": self.lines,
            "accepted": self.accepted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected_count": self.rejected_count,
            "legacy_count": self.legacy_count,
        }

    def to_result(self) -> ImportResult:
        return ImportResult(
            accepted=self.accepted,
            updated=self.updated,
            unchanged=self.unchanged,
            rejected=[
                RejectedLine(
                    line=r.number, errors=[FieldError(field=f, message=m) for f, m in r.errors]
                )
                for r in self.rejected
            ],
            rejected_count=self.rejected_count,
            legacy_lines=self.legacy_lines,
            legacy_count=self.legacy_count,
            dry_run=self.dry_run,
            lines=self.lines,
            merchants=KindCounts(**vars(self.merchants)),
            records=KindCounts(**vars(self.records)),
        )


@dataclass
class _Outcome:
    """What one batch did; applied to the report only once its transaction committed."""

    merchants: Counts = field(default_factory=Counts)
    records: Counts = field(default_factory=Counts)
    rejections: list[Rejection] = field(default_factory=list)
    deferred: list[RecordItem] = field(default_factory=list)
    legacy: list[int] = field(default_factory=list)
    """Line numbers of merchants stored as legacy codes."""


@dataclass
class _DryRunView:
    """The keys a dry run would have written, standing in for the database."""

    merchants: dict[str, tuple[str, bool]] = field(default_factory=dict)  # digest, legacy
    records: dict[RecordKey, int] = field(default_factory=dict)  # hash of the content


def _segments(
    items: list[Item],
) -> Iterator[tuple[dict[str, MerchantItem], dict[RecordKey, RecordItem]]]:
    """Split a batch where a key repeats, so that each part can be handled set-based
    and a later line about the same key still sees the earlier one."""
    merchants: dict[str, MerchantItem] = {}
    records: dict[RecordKey, RecordItem] = {}
    for item in items:
        if isinstance(item, MerchantItem):
            if item.code.code in merchants:
                yield merchants, records
                merchants, records = {}, {}
            merchants[item.code.code] = item
        else:
            if item.key in records:
                yield merchants, records
                merchants, records = {}, {}
            records[item.key] = item
    if merchants or records:
        yield merchants, records


class ImportPipeline:
    """One import run. Feed it lines (:meth:`process` or :meth:`feed_lines`), then :meth:`finish`.

    Not thread-safe, but it may be driven from different threads one call at a time
    (the HTTP route feeds it through the thread pool).
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        keyring: KeyRing,
        *,
        actor: str,
        dry_run: bool = False,
        batch_lines: int = BATCH_LINES,
        max_reported: int = MAX_REPORTED,
    ) -> None:
        self._sessions = session_factory
        self._codec = codec_for(keyring)
        self._actor = actor[:64]
        self._batch_lines = batch_lines
        self._max_reported = max_reported
        self._view = _DryRunView() if dry_run else None
        self._pending: list[Item] = []
        self._deferred: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (closed by finish/close)
        self._deferred_count = 0
        self._next_number = 1
        self.report = ImportReport(dry_run=dry_run)

    # ---- input -------------------------------------------------------------------------
    def process(self, lines: Iterable[RawLine]) -> None:
        """Take numbered lines (e.g. from a LineSplitter); stores every full batch."""
        for line in lines:
            self._take(parse(line))

    def feed_lines(self, lines: Iterable[bytes]) -> None:
        """Take whole lines (without newlines), numbered from 1 across calls."""
        for data in lines:
            self._take(parse(RawLine(self._next_number, data)))
            self._next_number += 1

    def feed_objects(self, objects: Iterable[Mapping[str, object]]) -> None:
        """Take lines already decoded from JSON (the demo generator's), numbered like lines."""
        for obj in objects:
            self._take(parse_object(self._next_number, obj))
            self._next_number += 1

    def _take(self, parsed: Parsed | None) -> None:
        if parsed is None:
            return
        self.report.lines += 1
        if isinstance(parsed, Rejection):
            self.report.reject(parsed, self._max_reported)
            return
        self._pending.append(parsed)
        if len(self._pending) >= self._batch_lines:
            self._flush(final=False)

    def finish(self) -> ImportReport:
        """Store what is pending, retry the parked records, and return the report."""
        try:
            self._flush(final=False)
            if self._deferred_count:
                self._retry_deferred()
        finally:
            self.close()
        self.report.trim(self._max_reported)
        return self.report

    def close(self) -> None:
        self._deferred.close()

    # ---- batches -----------------------------------------------------------------------
    def _flush(self, *, final: bool) -> None:
        items, self._pending = self._pending, []
        if items:
            self._run(items, final=final)

    def _retry_deferred(self) -> None:
        self._deferred.seek(0)
        batch: list[Item] = []
        for _ in range(self._deferred_count):
            number, size = (int(x) for x in self._deferred.readline().split())
            parsed = parse(RawLine(number, self._deferred.read(size)))
            if isinstance(parsed, MerchantItem | RecordItem):
                batch.append(parsed)
            if len(batch) >= self._batch_lines:
                self._run(batch, final=True)
                batch = []
        if batch:
            self._run(batch, final=True)

    def _run(self, items: list[Item], *, final: bool) -> None:
        for _attempt in range(2):
            outcome = _Outcome()
            try:
                self._transaction(items, outcome, final=final)
            except (IntegrityError, DataError):
                continue  # e.g. a concurrent import stored the same key: look again
            self._merge(outcome)
            return
        # Still failing: one line per transaction, so that only the culprit is rejected.
        for item in items:
            outcome = _Outcome()
            try:
                self._transaction([item], outcome, final=final)
            except (IntegrityError, DataError):
                outcome = _Outcome(rejections=[Rejection(item.number, [("line", NOT_STORED)])])
            self._merge(outcome)

    def _transaction(self, items: list[Item], outcome: _Outcome, *, final: bool) -> None:
        with self._sessions() as session:
            try:
                for merchants, records in _segments(items):
                    self._apply(session, merchants, records, outcome, final=final)
                if self._view is None:
                    session.commit()
            finally:
                session.rollback()

    def _merge(self, outcome: _Outcome) -> None:
        self.report.merchants.add(outcome.merchants)
        self.report.records.add(outcome.records)
        for rejection in outcome.rejections:
            self.report.reject(rejection, self._max_reported)
        for number in outcome.legacy:
            self.report.note_legacy(number, self._max_reported)
        for item in outcome.deferred:
            raw = item.raw()
            self._deferred.write(b"%d %d\n" % (item.number, len(raw)))
            self._deferred.write(raw)
            self._deferred_count += 1

    # ---- one segment: unique keys, handled set-based ----------------------------------
    def _apply(
        self,
        session: Session,
        merchants: dict[str, MerchantItem],
        records: dict[RecordKey, RecordItem],
        outcome: _Outcome,
        *,
        final: bool,
    ) -> None:
        present: set[str] = set()
        refreshed: set[str] = set()
        if merchants:
            present, refreshed = self._apply_merchants(session, merchants, outcome)
        if records:
            self._apply_records(session, records, present, refreshed, outcome, final=final)

    def _apply_merchants(
        self, session: Session, items: dict[str, MerchantItem], outcome: _Outcome
    ) -> tuple[set[str], set[str]]:
        """Upsert the merchants; returns the codes now present and those (re)written now."""
        stored = repo.merchant_rows(session, items.keys())
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        present: set[str] = set()
        refreshed: set[str] = set()
        for code, item in items.items():
            row = stored.get(code)
            seen = self._view.merchants.get(code) if self._view is not None else None
            exists = seen is not None or row is not None
            was_legacy = (
                seen[1] if seen is not None else bool(row is not None and row["legacy_code"])
            )
            if item.code.checksum_failed and item.line.legacy_code is False and not was_legacy:
                outcome.rejections.append(Rejection(item.number, [("uscc", _CHECKSUM)]))
                continue
            if item.code.checksum_failed:
                outcome.legacy.append(item.number)
            state = merchant_state(item.line, legacy=item.code.checksum_failed)
            digest = self._codec.digest(code, state)
            present.add(code)
            if not exists:
                outcome.merchants.accepted += 1
                if self._view is None:
                    values = self._codec.values(code, state, digest=digest, now=now)
                    inserts.append({**values, "created_at": now})
            else:
                if seen is not None:
                    previous: str | None = seen[0]
                else:
                    previous = self._codec.stored_digest(row) if row is not None else None
                if previous == digest:
                    outcome.merchants.unchanged += 1
                    continue
                outcome.merchants.updated += 1
                if self._view is None:
                    updates.append(self._codec.values(code, state, digest=digest, now=now))
            refreshed.add(code)
            if self._view is not None:
                self._view.merchants[code] = (digest, state.legacy_code)
        repo.insert_merchants(session, inserts)
        repo.update_merchants(session, updates)
        return present, refreshed

    def _apply_records(
        self,
        session: Session,
        items: dict[RecordKey, RecordItem],
        here: set[str],
        refreshed: set[str],
        outcome: _Outcome,
        *,
        final: bool,
    ) -> None:
        codes = {item.code for item in items.values()}
        known = here | repo.existing_usccs(session, codes - here)
        if self._view is not None:
            known |= codes & self._view.merchants.keys()
        stored = repo.record_rows(session, items.keys())
        now = utcnow()
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        history: list[dict[str, Any]] = []
        touched: set[str] = set()
        for key, item in items.items():
            code = item.code
            if code not in known:
                if not final:
                    outcome.deferred.append(item)
                    continue
                reason = uscc_problem_reason(code)
                message = str(USCCError(reason)) if reason else UNKNOWN_MERCHANT
                outcome.rejections.append(Rejection(item.number, [("uscc", message)]))
                continue
            state = record_state(item.line, code)
            row = stored.get(key)
            if self._view is not None:
                self._count_without_writing(self._view, key, state, row, outcome.records)
                continue
            if row is None:
                record_id, version, change = new_id("rec"), 1, "create"
                inserts.append(
                    {
                        "id": record_id,
                        "source": key[0],
                        "source_record_id": key[1],
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                        **state._asdict(),
                    }
                )
                outcome.records.accepted += 1
            else:
                previous = stored_record_state(row)
                if previous == state:
                    outcome.records.unchanged += 1
                    continue
                record_id, version, change = row["id"], row["version"] + 1, "import"
                updates.append(
                    {"id": record_id, "version": version, "updated_at": now, **state._asdict()}
                )
                touched.add(previous.uscc)
                outcome.records.updated += 1
            touched.add(code)
            history.append(
                {
                    "record_id": record_id,
                    "version": version,
                    "changed_at": now,
                    "changed_by": self._actor,
                    "change": change,
                    "reason": None,
                    "snapshot": snapshot(key[0], key[1], state),
                }
            )
        repo.insert_records(session, inserts)
        repo.update_records(session, updates)
        repo.insert_history(session, history)
        repo.touch_merchants(session, touched - refreshed, now)

    @staticmethod
    def _count_without_writing(
        view: _DryRunView,
        key: RecordKey,
        state: RecordState,
        row: RowMapping | None,
        counts: Counts,
    ) -> None:
        """Dry run: count a record as the real import would, remembering it instead."""
        fingerprint = hash(state)
        seen = view.records.get(key)
        view.records[key] = fingerprint
        if seen is not None:
            same = seen == fingerprint
        elif row is not None:
            same = stored_record_state(row) == state
        else:
            counts.accepted += 1
            return
        if same:
            counts.unchanged += 1
        else:
            counts.updated += 1
