"""The coalescer: groups of concurrent requests, results to the right waiter, failures
shared by a group only, graceful stop.

Each test drives the coalescer from ``asyncio.run``. With worker threads, to make groups
form deterministically, ``process`` blocks on its first call until the test has queued the
rest: everything submitted meanwhile waits in the queue and is taken by the next turns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from itertools import count
from typing import TypeVar

import pytest

from service.credit_checks.coalescer import Coalescer, CoalescerStopped

T = TypeVar("T")
WAIT = 5.0
"""Upper bound for a thread handshake; a healthy run never comes near it."""
_names = count()


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT)

    return asyncio.run(bounded())


class Recorder:
    """A ``process`` that doubles each request, records every group, and (when ``hold``)
    blocks its first call until :meth:`release`. ``fail`` decides when a group raises."""

    def __init__(
        self, *, hold: bool = False, fail: Callable[[list[int]], bool] | None = None
    ) -> None:
        self.groups: list[list[int]] = []
        self.entered = threading.Event()
        self._release = threading.Event()
        if not hold:
            self._release.set()
        self._fail = fail
        self._lock = threading.Lock()

    def __call__(self, requests: list[int]) -> list[int]:
        with self._lock:
            self.groups.append(list(requests))
            first = len(self.groups) == 1
        if first:
            self.entered.set()
            assert self._release.wait(WAIT), "the test never released the first group"
        if self._fail is not None and self._fail(requests):
            raise ValueError(f"refused {requests}")
        return [r * 2 for r in requests]

    def release(self) -> None:
        self._release.set()

    async def wait_entered(self) -> None:
        """Until the first group is inside ``process`` (without blocking the loop)."""
        assert await asyncio.to_thread(self.entered.wait, WAIT)


def _coalescer(
    process: Callable[[list[int]], list[int]],
    *,
    threads: int = 1,
    max_group: int = 16,
    name: str | None = None,
) -> Coalescer[int, int]:
    name = name or f"test-coalescer-{next(_names)}"
    return Coalescer(process, threads=threads, max_group=max_group, name=name)


async def _queue_behind_first(
    coalescer: Coalescer[int, int], recorder: Recorder, first: int, rest: list[int]
) -> tuple[asyncio.Task[int], list[asyncio.Task[int]]]:
    """Submit ``first`` and wait until its group is being processed, then submit ``rest``
    (queued, in this order, once this returns)."""
    head = asyncio.create_task(coalescer.submit(first))
    await recorder.wait_entered()
    tail = [asyncio.create_task(coalescer.submit(r)) for r in rest]
    await asyncio.sleep(0)  # every new task runs up to its await: all of them are queued
    return head, tail


def _stop(coalescer: Coalescer[int, int]) -> None:
    coalescer.stop(timeout=WAIT)


def _pile_up(coalescer: Coalescer[int, int], recorder: Recorder, count: int) -> list[int]:
    """Submit ``0`` and, while its group is held, ``1 .. count - 1``; release; the results.
    The coalescer is stopped afterwards."""

    async def main() -> list[int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, list(range(1, count)))
        recorder.release()
        return await asyncio.gather(head, *tail)

    try:
        return _run(main)
    finally:
        _stop(coalescer)


def test_results_reach_their_own_waiter_in_submission_order() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder)

    async def main() -> list[int]:
        return await asyncio.gather(*(coalescer.submit(n) for n in range(40)))

    try:
        assert _run(main) == [n * 2 for n in range(40)]
    finally:
        _stop(coalescer)
    # One worker thread takes the queue in order: the groups, end to end, are the submissions.
    assert [r for group in recorder.groups for r in group] == list(range(40))


def test_a_lone_request_is_handled_alone() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder)

    async def main() -> tuple[int, int]:
        first = await coalescer.submit(3)
        second = await coalescer.submit(4)
        return first, second

    try:
        assert _run(main) == (6, 8)
    finally:
        _stop(coalescer)
    assert recorder.groups == [[3], [4]]


def test_requests_that_pile_up_are_handled_in_groups_of_at_most_max_group() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, max_group=16)
    assert _pile_up(coalescer, recorder, 50) == [n * 2 for n in range(50)]
    sizes = [len(group) for group in recorder.groups]
    assert sizes == [1, 16, 16, 16, 1]
    assert [r for group in recorder.groups for r in group] == list(range(50))


def test_several_threads_never_exceed_max_group() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, threads=3, max_group=7)
    assert _pile_up(coalescer, recorder, 50) == [n * 2 for n in range(50)]
    sizes = [len(group) for group in recorder.groups]
    assert max(sizes) <= 7
    assert len(sizes) < 50
    assert sorted(r for group in recorder.groups for r in group) == list(range(50))


def test_max_group_one_handles_each_request_alone() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, max_group=1)
    assert _pile_up(coalescer, recorder, 4) == [0, 2, 4, 6]
    assert recorder.groups == [[0], [1], [2], [3]]


def test_an_exception_reaches_every_waiter_of_its_group_and_only_them() -> None:
    recorder = Recorder(hold=True, fail=lambda requests: -1 in requests)
    coalescer = _coalescer(recorder)

    async def main() -> tuple[int, list[int | BaseException], int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 1, [2, -1, 3])
        recorder.release()
        first = await head
        failed = await asyncio.gather(*tail, return_exceptions=True)
        after = await coalescer.submit(5)  # the coalescer goes on working
        return first, failed, after

    try:
        first, failed, after = _run(main)
    finally:
        _stop(coalescer)
    assert first == 2
    assert recorder.groups == [[1], [2, -1, 3], [5]]
    assert all(isinstance(outcome, ValueError) for outcome in failed), failed
    assert len({id(outcome) for outcome in failed}) == 1  # the one exception of the group
    assert after == 10


@pytest.mark.parametrize(
    ("group", "returned"),
    [(1, 0), (1, 2), (3, 2), (3, 4)],
    ids=["none-for-one", "two-for-one", "too-few-for-a-group", "too-many-for-a-group"],
)
def test_a_wrong_number_of_results_fails_the_whole_group(group: int, returned: int) -> None:
    """Every waiter of the group gets the error, and the next request is handled."""
    requests = list(range(1, group + 1))
    wrong = Recorder(hold=True)

    def process(batch: list[int]) -> list[int]:
        results = wrong(batch)
        if batch == requests:
            return (results * 2)[:returned]
        return results

    coalescer = _coalescer(process)

    async def main() -> tuple[list[int | BaseException], int]:
        head, tail = await _queue_behind_first(coalescer, wrong, 0, requests)
        wrong.release()
        await head
        outcomes = await asyncio.gather(*tail, return_exceptions=True)
        return outcomes, await coalescer.submit(7)

    try:
        outcomes, after = _run(main)
    finally:
        _stop(coalescer)
    assert wrong.groups[1] == requests
    assert len(outcomes) == group
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError), outcomes
        assert "one result per request" in str(outcome)
    assert after == 14


def test_stop_finishes_queued_work_then_refuses_new_requests() -> None:
    recorder = Recorder(hold=True)
    name = f"test-coalescer-stop-{next(_names)}"
    coalescer = _coalescer(recorder, threads=2, max_group=4, name=name)
    stopper = threading.Thread(target=_stop, args=(coalescer,))

    async def main() -> tuple[list[int], list[int]]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, list(range(1, 11)))
        stopper.start()
        # Until stop() has begun: a submit either is refused or joins the queued work.
        probes: list[asyncio.Task[int]] = []
        while True:
            probe = asyncio.create_task(coalescer.submit(100 + len(probes)))
            await asyncio.sleep(0)
            if probe.done():
                with pytest.raises(CoalescerStopped):
                    probe.result()
                break
            probes.append(probe)
            await asyncio.sleep(0.001)
        recorder.release()  # stop() is waiting for the queued work to be handled
        results = await asyncio.gather(head, *tail)
        late = await asyncio.gather(*probes)
        await asyncio.to_thread(stopper.join, WAIT)
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(99)
        return results, late

    results, late = _run(main)
    assert results == [n * 2 for n in range(11)]
    assert late == [(100 + n) * 2 for n in range(len(late))]
    handled = sorted(r for group in recorder.groups for r in group)
    assert handled == [*range(11), *range(100, 100 + len(late))]
    assert max(len(group) for group in recorder.groups) <= 4
    assert not stopper.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith(f"{name}-")]


def test_stop_before_any_request_refuses_new_ones() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder)
    _stop(coalescer)

    async def main() -> None:
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(1)

    _run(main)
    assert recorder.groups == []


def test_a_cancelled_waiter_does_not_break_delivery_to_the_others() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder)

    async def main() -> tuple[list[int], bool, int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, [1, 2, 3])
        tail[1].cancel()
        await asyncio.sleep(0)
        recorder.release()
        kept = list(await asyncio.gather(head, tail[0], tail[2]))
        with pytest.raises(asyncio.CancelledError):
            await tail[1]
        return kept, tail[1].cancelled(), await coalescer.submit(7)

    try:
        kept, cancelled, after = _run(main)
    finally:
        _stop(coalescer)
    assert kept == [0, 2, 6]
    assert cancelled
    assert after == 14
    # The cancelled request was already queued: it was still handled, its result dropped.
    assert recorder.groups == [[0], [1, 2, 3], [7]]


def test_waiters_on_different_event_loops_in_one_group_each_get_their_result() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder)
    results: dict[int, int] = {}
    queued = threading.Event()

    def other_loop() -> None:
        async def main() -> None:
            tasks = [asyncio.create_task(coalescer.submit(n)) for n in (10, 11)]
            await asyncio.sleep(0)
            queued.set()
            for n, value in zip((10, 11), await asyncio.gather(*tasks), strict=True):
                results[n] = value

        _run(main)

    async def main() -> list[int]:
        head = asyncio.create_task(coalescer.submit(0))
        await recorder.wait_entered()
        thread = threading.Thread(target=other_loop)
        thread.start()
        mine = [asyncio.create_task(coalescer.submit(n)) for n in (20, 21)]
        await asyncio.sleep(0)
        assert await asyncio.to_thread(queued.wait, WAIT)
        recorder.release()
        values = await asyncio.gather(head, *mine)
        await asyncio.to_thread(thread.join, WAIT)
        return values

    try:
        assert _run(main) == [0, 40, 42]
    finally:
        _stop(coalescer)
    assert results == {10: 20, 11: 22}
    assert len(recorder.groups) == 2  # both loops' requests handled in one group
    assert sorted(recorder.groups[1]) == [10, 11, 20, 21]


class Fatal(BaseException):
    """Not an ``Exception``: what would otherwise end a worker thread."""


def test_a_base_exception_reaches_its_group_and_the_worker_goes_on() -> None:
    calls: list[list[int]] = []

    def process(requests: list[int]) -> list[int]:
        calls.append(requests)
        if len(calls) == 1:
            raise Fatal("first group")
        return [r * 2 for r in requests]

    coalescer = _coalescer(process)

    async def main() -> int:
        with pytest.raises(Fatal):
            await coalescer.submit(1)
        return await coalescer.submit(2)

    try:
        assert _run(main) == 4
    finally:
        _stop(coalescer)


class FormingWatch:
    """A ``process`` for several worker threads that counts the groups being formed at once
    (entered, and neither handed off nor returned) and, on its first call, hands off only
    if ``handoff``, then blocks until :meth:`release`."""

    def __init__(self, *, handoff: bool) -> None:
        self.coalescer: Coalescer[int, int] | None = None
        self.groups: list[list[int]] = []
        self.most_forming = 0
        self.first_entered = threading.Event()
        self._handoff = handoff
        self._forming = 0
        self._mine = threading.local()
        self._release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, requests: list[int]) -> list[int]:
        with self._lock:
            self.groups.append(list(requests))
            first = len(self.groups) == 1
            self._forming += 1
            self.most_forming = max(self.most_forming, self._forming)
        self._mine.forming = True
        try:
            if first:
                self.first_entered.set()
                if self._handoff:
                    self._hand_off()
                    self._hand_off()  # a second call is a no-op
                assert self._release.wait(WAIT), "the test never released the first group"
            return [r * 2 for r in requests]
        finally:
            self._done_forming()

    def _done_forming(self) -> None:
        if self._mine.forming:
            self._mine.forming = False
            with self._lock:
                self._forming -= 1

    def _hand_off(self) -> None:
        assert self.coalescer is not None
        self._done_forming()
        self.coalescer.handoff()

    def release(self) -> None:
        self._release.set()


def _watched(*, handoff: bool) -> tuple[FormingWatch, Coalescer[int, int]]:
    watch = FormingWatch(handoff=handoff)
    coalescer = _coalescer(watch, threads=3, max_group=16)
    watch.coalescer = coalescer
    return watch, coalescer


def test_with_several_threads_the_next_group_waits_for_the_handoff() -> None:
    """A group that has not handed off is the only one being formed: what arrives meanwhile
    waits, and becomes one group when it returns (idle workers do not take requests one by
    one)."""
    watch, coalescer = _watched(handoff=False)

    async def main() -> list[int]:
        head = asyncio.create_task(coalescer.submit(0))
        assert await asyncio.to_thread(watch.first_entered.wait, WAIT)
        tail = [asyncio.create_task(coalescer.submit(n)) for n in range(1, 6)]
        await asyncio.sleep(0)
        watch.release()
        return await asyncio.gather(head, *tail)

    try:
        assert _run(main) == [n * 2 for n in range(6)]
    finally:
        _stop(coalescer)
    assert watch.groups == [[0], [1, 2, 3, 4, 5]]
    assert watch.most_forming == 1


def test_after_the_handoff_the_next_group_forms_while_the_first_is_still_processed() -> None:
    watch, coalescer = _watched(handoff=True)

    async def main() -> tuple[list[int], bool, int]:
        head = asyncio.create_task(coalescer.submit(0))
        assert await asyncio.to_thread(watch.first_entered.wait, WAIT)
        tail = [asyncio.create_task(coalescer.submit(n)) for n in range(1, 4)]
        # Answered while the first group is still held: another worker formed theirs.
        early = list(await asyncio.gather(*tail))
        still_held = not head.done()
        watch.release()
        return early, still_held, await head

    try:
        early, still_held, first = _run(main)
    finally:
        _stop(coalescer)
    assert early == [2, 4, 6]
    assert still_held
    assert first == 0
    assert watch.groups[0] == [0]
    assert sorted(r for group in watch.groups[1:] for r in group) == [1, 2, 3]


def test_handoff_outside_a_worker_thread_does_nothing() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder, threads=2)
    coalescer.handoff()  # not a worker: nothing to hand over, and no error

    async def main() -> list[int]:
        return list(await asyncio.gather(*(coalescer.submit(n) for n in range(5))))

    try:
        assert _run(main) == [0, 2, 4, 6, 8]
    finally:
        _stop(coalescer)
