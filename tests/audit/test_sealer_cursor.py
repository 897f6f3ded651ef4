"""The sequencer's scan cursor: a poll looks only at its gaps and above its ``high``; late
commits are sealed by the next poll; gaps expire and merge; a lost lease, an error or the
periodic rescan make it rebuild -- and every event is sealed exactly once throughout."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from audit import repository as repo
from audit.cursor import GapRange, ScanCursor
from audit.sealer import LEASE_NAME, Sequencer, Watermark
from service.db.base import utcnow
from service.ids import new_id
from service.models import AuditEvent
from tests.audit.support import (
    FreshApp,
    add_events,
    assert_sealed_exactly_once,
    event_count,
    fresh_app,
    log_state,
    wait_until,
)
from tests.fixtures.databases import using_postgres

WINDOW_QUERIES = (
    "lowest_unsealed_pk",
    "highest_settled_pk",
    "has_unsealed",
    "unsealed_events",
    "highest_sealed_pk",
    "unsealed_pk_ranges",
)
"""What a poll must not run while the cursor is live: the watermark's scans, the old
candidate scan, and a rebuild."""


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Probes = list[tuple[tuple[tuple[int, int], ...], int]]


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> Probes:
    """Every cursor probe (batch or ``pending``) as ``(ranges, above)``, made by the test's
    own thread: the sequencer threads of other apps in this process (the suite's shared
    app) probe their own logs meanwhile."""
    seen: Probes = []
    batch, peek = repo.unsealed_events_in, repo.has_unsealed_in
    test_thread = threading.get_ident()

    def unsealed_events_in(session: Any, ranges: Any, above: int, limit: int) -> Any:
        if threading.get_ident() == test_thread:
            seen.append((tuple(ranges), above))
        return batch(session, ranges, above, limit)

    def has_unsealed_in(session: Any, ranges: Any, above: int) -> bool:
        if threading.get_ident() == test_thread:
            seen.append((tuple(ranges), above))
        return peek(session, ranges, above)

    monkeypatch.setattr(repo, "unsealed_events_in", unsealed_events_in)
    monkeypatch.setattr(repo, "has_unsealed_in", has_unsealed_in)
    return seen


def forbid_window_scans(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own thread may not run them (other apps' sequencer threads still can)."""
    test_thread = threading.get_ident()

    def refuse(name: str) -> Any:
        original = getattr(repo, name)

        def call(*args: object, **kwargs: object) -> object:
            if threading.get_ident() != test_thread:
                return original(*args, **kwargs)
            raise AssertionError(f"repo.{name} ran while the cursor was live")

        return call

    for name in WINDOW_QUERIES:
        monkeypatch.setattr(repo, name, refuse(name))


@pytest.fixture
def fresh(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[FreshApp]:
    label = "cur_" + request.node.name.removeprefix("test_")[:24]
    with fresh_app(tmp_path, label) as app:
        yield app


# ---- helpers ------------------------------------------------------------------------------


def top_pk(fresh: FreshApp) -> int:
    with fresh.sessionmaker() as session:
        return int(session.scalar(select(func.max(AuditEvent.pk))) or 0)


def template(fresh: FreshApp) -> dict[str, Any]:
    """The columns of the newest event, to write copies of it with chosen pks."""
    with fresh.sessionmaker() as session:
        row = session.scalars(select(AuditEvent).order_by(AuditEvent.pk.desc()).limit(1)).one()
        return {c.key: getattr(row, c.key) for c in AuditEvent.__table__.columns}


def insert_at(fresh: FreshApp, values: dict[str, Any], *pks: int) -> None:
    """Events with explicit pks, committed now: on SQLite (one writer at a time) the way to
    make a lower pk appear after higher ones were sealed."""
    with fresh.sessionmaker() as session, session.begin():
        for pk in pks:
            row = {**values, "pk": pk, "id": new_id("evt"), "occurred_at": utcnow()}
            session.execute(insert(AuditEvent).values(**row))


def spans(cursor: ScanCursor | None) -> list[tuple[int, int]]:
    assert cursor is not None
    return [(gap.lo, gap.hi) for gap in cursor.gaps]


def sequencer(fresh: FreshApp, clock: Clock, **kwargs: Any) -> Sequencer:
    kwargs.setdefault("watermark", Watermark(clock=clock))
    return fresh.sequencer(clock=clock, **kwargs)


# ---- the cursor on its own -------------------------------------------------------------------


def test_the_cursor_splits_extends_merges_and_expires_its_gaps() -> None:
    cursor = ScanCursor.build(floor=10, high=20, holes=[(12, 14), (17, 17)], now=1.0)
    assert cursor.probe() == (20, [(12, 14), (17, 17)])
    assert cursor.settled() == 11
    # 13 and 17 sealed; 21..23 and 25 jumped over (invisible); 24, 26 sealed above high.
    cursor.record(20, [13, 17, 24, 26], now=2.0)
    assert cursor.high == 26
    assert cursor.gaps == (
        GapRange(12, 12, 1.0),
        GapRange(14, 14, 1.0),
        GapRange(21, 23, 2.0),
        GapRange(25, 25, 2.0),
    )
    cursor.expire(now=301.5, grace=300)  # the gaps of t=1 are older than the grace
    assert spans(cursor) == [(21, 23), (25, 25)]
    assert cursor.settled() == 20
    assert cursor.settled_at(1.5) == 11  # as it stood then (the watermark lags by a grace)
    assert cursor.settled_at(400) == 20
    assert cursor.settled_at(0.5) is None  # the cursor is younger

    small = ScanCursor.build(floor=0, high=0, holes=[], now=5.0, max_ranges=2)
    small.record(0, [3, 6, 9], now=6.0)  # gaps 1-2, 4-5, 7-8: one range too many
    assert small.gaps == (GapRange(1, 8, 6.0),)
    small.record(9, [4], now=9.0)
    assert small.gaps == (GapRange(1, 3, 6.0), GapRange(5, 8, 6.0))


def test_single_pk_gaps_have_a_bound_of_their_own() -> None:
    cursor = ScanCursor.build(floor=0, high=0, holes=[], now=1.0, max_ranges=1, max_single_pks=3)
    cursor.record(0, [2, 4, 6], now=2.0)  # single pks 1, 3, 5: they are not ranges
    assert spans(cursor) == [(1, 1), (3, 3), (5, 5)]
    cursor.record(6, [8], now=3.0)  # a fourth one
    assert cursor.gaps == (GapRange(1, 7, 3.0),)


def test_a_merged_range_lives_as_long_as_its_youngest_part() -> None:
    cursor = ScanCursor.build(floor=0, high=10, holes=[(2, 2)], now=1.0, max_single_pks=1)
    cursor.record(10, [12], now=50.0)  # gap 11, young: merged with the old one
    assert cursor.gaps == (GapRange(2, 11, 50.0),)
    cursor.expire(now=302.0, grace=300)  # 2 alone would have expired
    assert spans(cursor) == [(2, 11)]


# ---- the sequencer with its cursor -----------------------------------------------------------


def test_a_steady_stream_is_sealed_looking_only_above_high(
    fresh: FreshApp, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    seq = sequencer(fresh, clock, batch_size=10)
    add_events(fresh.sessionmaker, 4)
    assert seq.drain() == event_count(fresh.sessionmaker)
    cursor = seq.cursor
    assert cursor is not None
    assert (cursor.high, cursor.gaps) == (top_pk(fresh), ())
    forbid_window_scans(monkeypatch)  # from now on, no O(window) query at all
    for count in (7, 10, 25, 3):
        add_events(fresh.sessionmaker, count)
        high = cursor.high
        probes.clear()
        assert seq.pending()
        assert seq.drain() == count
        assert seq.cursor is cursor  # never rebuilt
        assert (cursor.high, cursor.gaps) == (top_pk(fresh), ())
        # ``pending``, then each batch looked above the high left by the one before (the
        # last one finding less than a full batch), and nowhere else.
        batches = [((), high + 10 * i) for i in range(count // 10 + 1)]
        assert probes == [((), high), *batches]
    assert not seq.pending()
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


def test_a_late_commit_below_high_is_sealed_by_the_next_poll(
    fresh: FreshApp, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    seq = sequencer(fresh, clock)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    top, values = top_pk(fresh), template(fresh)
    insert_at(fresh, values, top + 10)
    assert seq.drain() == 1
    cursor = seq.cursor
    assert cursor is not None
    assert cursor.high == top + 10
    assert cursor.gaps == (GapRange(top + 1, top + 9, clock.now),)
    forbid_window_scans(monkeypatch)
    insert_at(fresh, values, top + 5)  # "its transaction committed late"
    clock.advance(5)
    probes.clear()
    assert seq.pending()
    assert probes == [(((top + 1, top + 9),), top + 10)]
    assert seq.drain() == 1
    assert seq.cursor is cursor  # found by the cursor itself, not by a rescan
    assert spans(cursor) == [(top + 1, top + 4), (top + 6, top + 9)]
    assert not seq.pending()
    insert_at(fresh, values, top + 12)
    assert seq.drain() == 1
    assert spans(cursor) == [(top + 1, top + 4), (top + 6, top + 9), (top + 11, top + 11)]
    insert_at(fresh, values, top + 11, top + 2)  # late in a range and in a single-pk gap
    assert seq.drain() == 2
    assert seq.cursor is cursor
    assert spans(cursor) == [(top + 1, top + 1), (top + 3, top + 4), (top + 6, top + 9)]
    assert not seq.pending()
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


@pytest.mark.postgres
@pytest.mark.skipif(not using_postgres(), reason="two open writers need PostgreSQL")
def test_a_transaction_that_commits_after_a_higher_pk_was_sealed(
    fresh: FreshApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real race: the pk is allocated at insert, the row is visible only at commit."""
    clock = Clock()
    seq = sequencer(fresh, clock)
    add_events(fresh.sessionmaker, 1)
    seq.drain()
    values = {k: v for k, v in template(fresh).items() if k != "pk"}
    with fresh.sessionmaker() as slow:
        slow_pk = slow.scalar(
            insert(AuditEvent)
            .values(**{**values, "id": new_id("evt"), "occurred_at": utcnow()})
            .returning(AuditEvent.pk)
        )
        add_events(fresh.sessionmaker, 1)  # a higher pk, committed first
        fast_pk = top_pk(fresh)
        assert slow_pk is not None
        assert fast_pk > slow_pk
        assert seq.drain() == 1  # the slow one is invisible yet
        cursor = seq.cursor
        assert cursor is not None
        assert cursor.high == fast_pk
        assert any(gap.lo <= slow_pk <= gap.hi for gap in cursor.gaps)
        slow.commit()
    forbid_window_scans(monkeypatch)
    assert seq.pending()
    assert seq.drain() == 1
    assert seq.cursor is cursor
    assert not any(gap.lo <= slow_pk <= gap.hi for gap in cursor.gaps)
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


def test_a_gap_that_never_fills_expires_after_the_grace(
    fresh: FreshApp, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    watermark = Watermark(grace_seconds=30, clock=clock)
    seq = sequencer(fresh, clock, watermark=watermark, full_scan_seconds=3600)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    top, values = top_pk(fresh), template(fresh)
    insert_at(fresh, values, top + 3)  # top + 1 and + 2: rolled back, say
    assert seq.drain() == 1
    cursor = seq.cursor
    assert spans(cursor) == [(top + 1, top + 2)]
    forbid_window_scans(monkeypatch)
    clock.advance(29)
    probes.clear()
    assert not seq.pending()
    assert probes == [(((top + 1, top + 2),), top + 3)]  # still probed within the grace
    assert watermark.value <= top  # and the watermark waits below it
    clock.advance(2)
    probes.clear()
    assert not seq.pending()
    assert probes == [((), top + 3)]  # expired: no longer probed
    assert seq.cursor is cursor
    assert cursor is not None
    assert cursor.gaps == ()
    clock.advance(31)
    assert not seq.pending()
    assert watermark.value == top + 3  # passed a grace after the cursor gave up on it
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


def test_too_many_gaps_merge_into_one_range_that_still_finds_a_late_event(
    fresh: FreshApp, probes: Probes, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    seq = sequencer(fresh, clock, max_gap_ranges=4)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    top, values = top_pk(fresh), template(fresh)
    insert_at(fresh, values, *(top + 3 * i for i in range(1, 6)))  # every third pk
    assert seq.drain() == 5
    cursor = seq.cursor
    assert cursor is not None
    assert cursor.gaps == (GapRange(top + 1, top + 14, clock.now),)  # five holes, one range
    forbid_window_scans(monkeypatch)
    insert_at(fresh, values, top + 7)
    probes.clear()
    assert seq.pending()
    assert probes == [(((top + 1, top + 14),), top + 15)]
    assert seq.drain() == 1
    assert seq.cursor is cursor
    assert spans(cursor) == [(top + 1, top + 6), (top + 8, top + 14)]
    monkeypatch.undo()
    assert_sealed_exactly_once(fresh)


def test_losing_the_lease_drops_the_cursor_and_nothing_is_sealed_twice_or_lost(
    fresh: FreshApp,
) -> None:
    clock = Clock()
    # Long enough for the first drain on a loaded CI machine (0.5 s once expired before
    # it began), short enough to wait out.
    leader = sequencer(fresh, clock, use_lease=True, holder="leader", lease_seconds=2.0)
    standby = sequencer(fresh, clock, use_lease=True, holder="standby", lease_seconds=30)
    assert leader.acquire_lease()
    add_events(fresh.sessionmaker, 5)
    assert leader.drain() > 0
    assert leader.cursor is not None
    wait_until(standby.acquire_lease, 5, "the lease to expire")
    add_events(fresh.sessionmaker, 3)
    assert standby.drain() == 3
    add_events(fresh.sessionmaker, 2)
    assert leader.seal_batch().sealed == 0  # fenced out ...
    assert leader.cursor is None  # ... and the cursor is gone
    assert leader.pending()  # a read: it builds a cursor again
    assert leader.cursor is not None
    assert not leader.acquire_lease()  # the lease is not ours: forgotten again
    assert leader.cursor is None
    standby.release_lease()
    assert standby.cursor is None
    assert leader.acquire_lease()
    assert leader.drain() == 2
    cursor = leader.cursor
    assert cursor is not None
    assert (cursor.high, cursor.gaps) == (top_pk(fresh), ())  # rebuilt from the log
    assert_sealed_exactly_once(fresh)


def test_a_lapsed_lease_drops_the_cursor_even_when_taken_back(fresh: FreshApp) -> None:
    clock = Clock()
    seq = sequencer(fresh, clock, use_lease=True, holder="napper", lease_seconds=2)
    assert seq.acquire_lease()
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    cursor = seq.cursor
    assert cursor is not None
    assert seq.acquire_lease()  # renewed in time: kept
    assert seq.cursor is cursor

    def lapsed() -> bool:
        with fresh.sessionmaker() as session:
            lease = repo.lease_holder(session, LEASE_NAME)
        return lease is not None and lease[1] <= utcnow()

    wait_until(lapsed, 10, "the lease to lapse")
    assert seq.acquire_lease()  # ours again, but someone may have sealed meanwhile
    assert seq.cursor is None
    assert_sealed_exactly_once(fresh)


def test_an_error_mid_batch_drops_the_cursor_and_the_next_drain_seals_the_rest(
    fresh: FreshApp,
) -> None:
    clock = Clock()
    batches: list[tuple[int, int]] = []
    crash_at: list[int] = []

    def crash(first: int, last: int) -> None:
        batches.append((first, last))
        if len(batches) in crash_at:
            raise RuntimeError("killed mid-batch")

    seq = sequencer(fresh, clock, batch_size=4, before_commit=crash)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    assert seq.cursor is not None
    sealed, _ = log_state(fresh.sessionmaker)
    top = top_pk(fresh)
    add_events(fresh.sessionmaker, 9)
    crash_at.append(len(batches) + 2)  # the second batch of the next drain
    with pytest.raises(RuntimeError, match="killed mid-batch"):
        seq.drain()
    assert seq.cursor is None
    seqs, _ = log_state(fresh.sessionmaker)
    assert len(seqs) == len(sealed) + 4  # the first batch committed, the second did not
    assert seq.drain() == 5
    cursor = seq.cursor
    assert cursor is not None
    assert (cursor.high, cursor.gaps) == (top + 9, ())
    assert_sealed_exactly_once(fresh)


def test_the_periodic_full_scan_rebuilds_the_cursor_and_finds_what_it_gave_up(
    fresh: FreshApp, probes: Probes
) -> None:
    clock = Clock()
    watermark = Watermark(grace_seconds=30, clock=clock)
    seq = sequencer(fresh, clock, watermark=watermark, full_scan_seconds=60)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    first = seq.cursor
    assert first is not None
    top, values = top_pk(fresh), template(fresh)
    insert_at(fresh, values, top + 10)
    assert seq.drain() == 1
    clock.advance(31)
    assert not seq.pending()  # the gap below top + 10 expired
    insert_at(fresh, values, top + 5)  # later than any transaction should take
    assert seq.seal_batch().sealed == 0  # the cursor gave up on it
    assert seq.cursor is first
    clock.advance(30)  # 61 s after the build
    probes.clear()
    assert seq.pending()
    rebuilt = seq.cursor
    assert rebuilt is not None
    assert rebuilt is not first
    assert rebuilt.built_at == clock.now
    assert spans(rebuilt) == [(top + 1, top + 9)]  # the holes, read again from the log
    assert probes == [(((top + 1, top + 9),), top + 10)]
    assert seq.drain() == 1
    assert_sealed_exactly_once(fresh)


def test_after_pk_above_high_scans_without_the_cursor(fresh: FreshApp, probes: Probes) -> None:
    """The old scan, for a caller that asks to look above what the cursor knows."""
    clock = Clock()
    seq = sequencer(fresh, clock)
    add_events(fresh.sessionmaker, 2)
    seq.drain()
    cursor = seq.cursor
    assert cursor is not None
    top, values = top_pk(fresh), template(fresh)
    insert_at(fresh, values, top + 1, top + 2, top + 3)
    probes.clear()
    result = seq.seal_batch(after_pk=top + 1)
    assert (result.sealed, result.last_pk) == (2, top + 3)
    assert probes == []  # not through the cursor, which stays as it was
    assert seq.cursor is cursor
    assert cursor.high == top
    assert seq.drain() == 1  # top + 1, through the cursor (the others are sealed already)
    assert probes == [((), top)]
    assert (cursor.high, cursor.gaps) == (top + 1, ())
    assert_sealed_exactly_once(fresh)
