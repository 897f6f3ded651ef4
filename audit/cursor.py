"""The sequencer's scan cursor: what one sequencer knows is sealed, so a poll reads only what is new.

Finding unsealed events is an anti-join. Bounded below by the ``Watermark``
alone, every poll would re-read the whole grace window (every event sealed in
the last five minutes): the watermark may only pass events sealed longer ago
than any transaction stays open, because an event's pk is allocated before its
transaction commits and a lower pk can become visible after higher ones were
sealed.

The cursor remembers instead. It holds ``high`` and ``gaps``, inclusive pk
ranges below ``high``, with the invariant

    every committed event with ``floor < pk <= high`` is sealed, unless its pk
    lies in a gap,

where ``floor`` is the watermark the cursor was built from. So the unsealed
events are among ``pk > high`` and the gaps: a poll probes the gaps (few, short
ranges: pks that were invisible -- uncommitted, rolled back -- or sealed by
someone else when last looked at) and the tail above ``high``, which is what
was written since the last poll.

The invariant only ever needs "this pk is sealed" to take a pk out of the
unknown, so it survives anything that seals *more* (another sequencer racing
without the lease): a pk only leaves the gaps when this cursor saw it sealed,
and ``high`` only moves past pks that were looked at in the same statement
(those not returned become gaps). A gap is dropped after the watermark's grace,
on the watermark's own assumption: its pk was allocated before a higher one was
visible, so its transaction has been open longer than any stays open. The
number of ranges is bounded: past the limit they merge into one range (a longer
probe, never a lost pk). Single pks, the usual gap (a rolled-back event), have a
bound of their own, since the query probes them all with one ``IN`` list.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

__all__ = ["MAX_GAP_PKS", "MAX_GAP_RANGES", "GapRange", "ScanCursor"]

MAX_GAP_RANGES: Final = 64
"""Gap ranges of several pks kept apart (each is one range probe of the query)."""
MAX_GAP_PKS: Final = 512
"""Single-pk gaps kept apart (all of them are one ``IN`` list of the query). They are the
common kind: the pk of one rolled-back event, left behind for a grace each. With the
ranges, the query stays under 999 bound parameters (the limit of SQLite before 3.32)."""


class GapRange(NamedTuple):
    """Pks ``lo..hi`` (inclusive) not seen sealed, first noticed at ``first_seen`` (monotonic)."""

    lo: int
    hi: int
    first_seen: float


class ScanCursor:
    """``high`` and the gap ranges below it (see the module docstring for the invariant).

    Built from one read (``build``) and then kept up to date from the batches
    the sequencer commits (``record``). A lock makes each update atomic, so a
    sequencer shared by threads cannot tear it; and since an update takes a pk
    out of the gaps only when it saw it sealed, and moves ``high`` only over pks
    it looked at, two updates keep the invariant in either order.
    """

    def __init__(
        self,
        *,
        floor: int,
        high: int,
        gaps: Iterable[GapRange],
        built_at: float,
        max_ranges: int = MAX_GAP_RANGES,
        max_single_pks: int = MAX_GAP_PKS,
    ) -> None:
        if max_ranges < 1 or max_single_pks < 0:
            raise ValueError("max_ranges must be >= 1 and max_single_pks >= 0")
        self.floor = floor
        self.built_at = built_at
        self._limits = (max_ranges, max_single_pks)
        self._high = high
        self._gaps = _bounded(_normalised(list(gaps)), *self._limits)
        self._lock = threading.Lock()
        self._history: deque[tuple[float, int]] = deque([(built_at, self._settled())])

    @classmethod
    def build(
        cls,
        *,
        floor: int,
        high: int,
        holes: Iterable[tuple[int, int]],
        now: float,
        max_ranges: int = MAX_GAP_RANGES,
        max_single_pks: int = MAX_GAP_PKS,
    ) -> ScanCursor:
        """A cursor from a fresh read: ``holes`` are the ranges in ``(floor, high]`` holding no
        sealed event. Their age is unknown, so they count from ``now`` (the longer wait)."""
        gaps = (GapRange(lo, hi, now) for lo, hi in holes)
        return cls(
            floor=floor,
            high=high,
            gaps=gaps,
            built_at=now,
            max_ranges=max_ranges,
            max_single_pks=max_single_pks,
        )

    @property
    def high(self) -> int:
        return self._high

    @property
    def gaps(self) -> tuple[GapRange, ...]:
        return tuple(self._gaps)

    def probe(self) -> tuple[int, list[tuple[int, int]]]:
        """``(high, [(lo, hi), ...])``: where the next unsealed events can be."""
        with self._lock:
            return self._high, [(gap.lo, gap.hi) for gap in self._gaps]

    def settled(self) -> int:
        """A pk at or below which this cursor knows of nothing left to seal (above ``floor``)."""
        with self._lock:
            return self._settled()

    def settled_at(self, when: float) -> int | None:
        """What ``settled`` was at ``when`` (None if the cursor is younger).

        The watermark moves up to this value taken a grace ago, so it lags the
        cursor as it lagged the sealing before: a rebuild starts a grace below
        what the cursor gave up on, and still finds an event that committed
        after its gap expired. History older than ``when`` is forgotten.
        """
        with self._lock:
            history = self._history
            while len(history) > 1 and history[1][0] <= when:
                history.popleft()
            since, value = history[0]
            return value if since <= when else None

    def expire(self, now: float, grace: float) -> None:
        """Drop gaps noticed ``grace`` seconds ago or earlier: no transaction stays open that long."""
        with self._lock:
            self._gaps = [gap for gap in self._gaps if now - gap.first_seen < grace]
            self._remember(now)

    def record(self, high_seen: int, sealed: Sequence[int], now: float) -> None:
        """Account for a committed batch that probed the gaps and everything above ``high_seen``
        and sealed ``sealed`` (ascending pks).

        Sealed pks leave the gaps. The batch read the lowest candidates in pk
        order, so every pk above ``high_seen`` up to the highest it sealed that
        it did not return was invisible to it (or sealed by someone else): those
        become gaps, noticed now.
        """
        if not sealed:
            return
        with self._lock:
            gaps = [part for gap in self._gaps for part in _without(gap, sealed)]
            top = sealed[-1]
            if top > high_seen:
                gaps.extend(_without(GapRange(high_seen + 1, top, now), sealed))
                self._high = max(self._high, top)
            self._gaps = _bounded(_normalised(gaps), *self._limits)
            self._remember(now)

    def _settled(self) -> int:
        return self._gaps[0].lo - 1 if self._gaps else self._high

    def _remember(self, now: float) -> None:
        """Note ``settled`` as of ``now`` when it changed (the lock is held)."""
        value = self._settled()
        if value != self._history[-1][1]:
            self._history.append((now, value))

    def __repr__(self) -> str:
        return f"ScanCursor(floor={self.floor}, high={self._high}, gaps={self._gaps!r})"


def _without(gap: GapRange, pks: Sequence[int]) -> list[GapRange]:
    """``gap`` minus the (ascending) ``pks``: split around each pk that falls inside it."""
    start, end = bisect_left(pks, gap.lo), bisect_right(pks, gap.hi)
    if start == end:
        return [gap]
    parts: list[GapRange] = []
    lo = gap.lo
    for pk in pks[start:end]:
        if pk > lo:
            parts.append(GapRange(lo, pk - 1, gap.first_seen))
        lo = pk + 1
    if lo <= gap.hi:
        parts.append(GapRange(lo, gap.hi, gap.first_seen))
    return parts


def _normalised(gaps: list[GapRange]) -> list[GapRange]:
    """Sorted, with overlapping ranges merged (only concurrent updates can make them overlap).

    A merged range keeps the *latest* ``first_seen`` of its parts, so no pk's
    gap expires sooner than its own.
    """
    gaps.sort()
    out: list[GapRange] = []
    for gap in gaps:
        if out and gap.lo <= out[-1].hi:
            last = out[-1]
            out[-1] = GapRange(last.lo, max(last.hi, gap.hi), max(last.first_seen, gap.first_seen))
        else:
            out.append(gap)
    return out


def _bounded(gaps: list[GapRange], max_ranges: int, max_single_pks: int) -> list[GapRange]:
    """At most ``max_ranges`` ranges of several pks and ``max_single_pks`` single pks: beyond
    either, one range over all of them (sorted input).

    It probes the sealed pks in between too (an index probe each, like the scan
    without a cursor, but over that span only) and lives as long as its
    youngest part, so it covers every pk at least as long as before.
    """
    singles = sum(1 for gap in gaps if gap.lo == gap.hi)
    if len(gaps) - singles <= max_ranges and singles <= max_single_pks:
        return gaps
    newest = max(gap.first_seen for gap in gaps)
    return [GapRange(gaps[0].lo, max(gap.hi for gap in gaps), newest)]
