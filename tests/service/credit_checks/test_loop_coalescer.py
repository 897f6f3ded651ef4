"""The loop coalescer: groups of concurrent requests on the event loop itself, results to
the right waiter, groups formed one at a time (the ``formed`` callback), at most
``concurrency`` groups in progress, failures shared by a group only, graceful stop.

Each test drives the coalescer from ``asyncio.run`` under a timeout, so that a hang fails
instead of blocking. Everything runs on one loop and nothing waits on a timer (except the
stop timeout), so the groups are deterministic: ``process`` holds its first call on an
``asyncio.Event`` until the test has submitted the rest, and ``_settle`` lets every task
that can go on do so before the test looks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import count
from typing import TypeVar

import pytest

from service.credit_checks.coalescer import CoalescerStopped
from service.credit_checks.loop_coalescer import Formed, LoopCoalescer

T = TypeVar("T")
WAIT = 5.0
"""Upper bound for a whole test; a healthy run never comes near it."""
STUCK = 0.2
"""The stop timeout of the tests where a group never finishes in time."""
_names = count()

Process = Callable[[list[int], Formed], Awaitable[list[int]]]


def _coalescer(
    process: Process, *, concurrency: int = 1, max_group: int = 16
) -> LoopCoalescer[int, int]:
    name = f"test-loop-coalescer-{next(_names)}"
    return LoopCoalescer(process, concurrency=concurrency, max_group=max_group, name=name)


def _run(coalescer: LoopCoalescer[int, int], main: Callable[[], Awaitable[T]]) -> T:
    """``main()`` on a new loop, bounded by ``WAIT``; then the coalescer is stopped and no
    task may be left (every group ended). On failure, ``asyncio.run`` cancels what is left."""

    async def bounded() -> T:
        async with asyncio.timeout(WAIT):
            result = await main()
            await coalescer.stop(timeout=WAIT)
        left = asyncio.all_tasks() - {asyncio.current_task()}
        assert not left, left
        return result

    return asyncio.run(bounded())


async def _settle(rounds: int = 20) -> None:
    """Let the loop go round ``rounds`` times: every task that can go on (submit, turn,
    ``process`` up to its next wait) does, without any timer."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class Recorder:
    """A ``process`` that doubles each request and records every group. With ``hold``, its
    first call waits until :meth:`release` (calling ``formed`` first only if the test said
    so with :meth:`let_form`); ``fail`` decides when a group raises."""

    def __init__(
        self, *, hold: bool = False, fail: Callable[[list[int]], bool] | None = None
    ) -> None:
        self.groups: list[list[int]] = []
        self.entered = asyncio.Event()
        self._form = asyncio.Event()
        self._release = asyncio.Event()
        self._let_form = False
        if not hold:
            self.release()
        self._fail = fail

    async def __call__(self, requests: list[int], formed: Formed) -> list[int]:
        self.groups.append(list(requests))
        if len(self.groups) == 1:
            self.entered.set()
            await self._form.wait()
            if self._let_form:
                formed()
            await self._release.wait()
        await asyncio.sleep(0)  # a coroutine that really waits, as a group's I/O does
        if self._fail is not None and self._fail(requests):
            raise ValueError(f"refused {requests}")
        return [r * 2 for r in requests]

    def let_form(self) -> None:
        """The held first group calls ``formed()`` (and goes on waiting for release)."""
        self._let_form = True
        self._form.set()

    def release(self) -> None:
        self._form.set()
        self._release.set()


class Crowd:
    """A ``process`` whose every call calls ``formed()`` at once, then waits until
    :meth:`release`: it counts the groups inside ``process`` at once."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.active = 0
        self.most_active = 0
        self._release = asyncio.Event()

    async def __call__(self, requests: list[int], formed: Formed) -> list[int]:
        self.groups.append(list(requests))
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            formed()
            await self._release.wait()
            await asyncio.sleep(0)
            return [r * 2 for r in requests]
        finally:
            self.active -= 1

    def release(self) -> None:
        self._release.set()


async def _queue_behind_first(
    coalescer: LoopCoalescer[int, int], recorder: Recorder, first: int, rest: list[int]
) -> tuple[asyncio.Task[int], list[asyncio.Task[int]]]:
    """Submit ``first`` and wait until its group is in ``process`` (held), then submit
    ``rest``: all of them waiting, in this order, once this returns."""
    head = asyncio.create_task(coalescer.submit(first))
    await recorder.entered.wait()
    tail = [asyncio.create_task(coalescer.submit(r)) for r in rest]
    await _settle()
    return head, tail


def _pile_up(coalescer: LoopCoalescer[int, int], recorder: Recorder, count: int) -> list[int]:
    """Submit ``0`` and, while its group is held, ``1 .. count - 1``; release; the results."""

    async def main() -> list[int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, list(range(1, count)))
        assert recorder.groups == [[0]]
        recorder.release()
        return list(await asyncio.gather(head, *tail))

    return _run(coalescer, main)


def test_results_reach_their_own_waiter_in_submission_order() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder, concurrency=3, max_group=16)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(coalescer.submit(n) for n in range(40))))

    assert _run(coalescer, main) == [n * 2 for n in range(40)]
    # All 40 were waiting when the first group started: it took 16, and each next group
    # took what was left once the one before had returned, in order.
    assert recorder.groups == [list(range(16)), list(range(16, 32)), list(range(32, 40))]


def test_a_lone_request_is_handled_alone_at_once() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder, concurrency=2)

    async def main() -> tuple[int, int]:
        lone = asyncio.create_task(coalescer.submit(3))
        await _settle()  # a few turns of the loop, no timer: nobody waits for company
        assert lone.done()
        return lone.result(), await coalescer.submit(4)

    assert _run(coalescer, main) == (6, 8)
    assert recorder.groups == [[3], [4]]


def test_until_formed_the_next_group_waits_then_takes_everything_that_arrived() -> None:
    """Slots are free, yet while the first group has not called ``formed()`` nothing else
    is taken; when its ``process`` returns, what arrived meanwhile is one group."""
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, concurrency=3)

    async def main() -> list[int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, [1, 2, 3, 4, 5])
        assert recorder.groups == [[0]]
        assert not any(task.done() for task in tail)
        recorder.release()
        return list(await asyncio.gather(head, *tail))

    assert _run(coalescer, main) == [0, 2, 4, 6, 8, 10]
    assert recorder.groups == [[0], [1, 2, 3, 4, 5]]


def test_after_formed_the_next_group_forms_while_the_first_is_still_in_progress() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, concurrency=2)

    async def main() -> tuple[list[int], int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, [1, 2, 3])
        assert recorder.groups == [[0]]
        recorder.let_form()
        # Answered while the first group is still held: theirs formed on formed().
        early = list(await asyncio.gather(*tail))
        assert not head.done()
        assert recorder.groups == [[0], [1, 2, 3]]
        recorder.release()
        return early, await head

    assert _run(coalescer, main) == ([2, 4, 6], 0)
    assert recorder.groups == [[0], [1, 2, 3]]


@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_at_most_concurrency_groups_are_in_process_at_once(concurrency: int) -> None:
    """Every group calls ``formed()`` at once and then waits: only the slots hold the next
    group back, and the one beyond them takes everything that arrived while it waited."""
    crowd = Crowd()
    coalescer = _coalescer(crowd, concurrency=concurrency)

    async def main() -> list[int]:
        tasks: list[asyncio.Task[int]] = []
        for n in range(6):
            tasks.append(asyncio.create_task(coalescer.submit(n)))
            await _settle()
        assert crowd.active == concurrency
        assert crowd.groups == [[n] for n in range(concurrency)]
        assert not any(task.done() for task in tasks)
        crowd.release()
        return list(await asyncio.gather(*tasks))

    assert _run(coalescer, main) == [n * 2 for n in range(6)]
    assert crowd.most_active == concurrency
    assert crowd.active == 0
    assert crowd.groups == [*([n] for n in range(concurrency)), list(range(concurrency, 6))]


def test_requests_that_pile_up_are_handled_in_groups_of_at_most_max_group() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, max_group=4)
    assert _pile_up(coalescer, recorder, 11) == [n * 2 for n in range(11)]
    assert recorder.groups == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


def test_concurrent_groups_never_exceed_max_group() -> None:
    crowd = Crowd()
    coalescer = _coalescer(crowd, concurrency=3, max_group=7)

    async def main() -> list[int]:
        head = asyncio.create_task(coalescer.submit(0))
        await _settle()
        tail = [asyncio.create_task(coalescer.submit(n)) for n in range(1, 50)]
        await _settle()
        assert crowd.groups == [[0], list(range(1, 8)), list(range(8, 15))]  # 3 slots
        crowd.release()
        return list(await asyncio.gather(head, *tail))

    assert _run(coalescer, main) == [n * 2 for n in range(50)]
    assert [len(group) for group in crowd.groups] == [1, 7, 7, 7, 7, 7, 7, 7]
    assert [r for group in crowd.groups for r in group] == list(range(50))
    assert crowd.most_active == 3


def test_max_group_one_handles_each_request_alone() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, concurrency=2, max_group=1)
    assert _pile_up(coalescer, recorder, 4) == [0, 2, 4, 6]
    assert recorder.groups == [[0], [1], [2], [3]]


def test_an_exception_reaches_every_waiter_of_its_group_and_only_them() -> None:
    """The failing group fails while the first is still in progress: the first still gets
    its result, and so does the next request."""
    recorder = Recorder(hold=True, fail=lambda requests: -1 in requests)
    coalescer = _coalescer(recorder, concurrency=2)

    async def main() -> tuple[int, list[int | BaseException], int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 1, [2, -1, 3])
        recorder.let_form()
        failed = await asyncio.gather(*tail, return_exceptions=True)
        assert not head.done()
        recorder.release()
        first = await head
        after = await coalescer.submit(5)  # the coalescer goes on working
        return first, failed, after

    first, failed, after = _run(coalescer, main)
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

    async def process(batch: list[int], formed: Formed) -> list[int]:
        results = await wrong(batch, formed)
        if batch == requests:
            return (results * 2)[:returned]
        return results

    coalescer = _coalescer(process)

    async def main() -> tuple[int, list[int | BaseException], int]:
        head, tail = await _queue_behind_first(coalescer, wrong, 0, requests)
        wrong.release()
        first = await head
        outcomes = await asyncio.gather(*tail, return_exceptions=True)
        return first, outcomes, await coalescer.submit(7)

    first, outcomes, after = _run(coalescer, main)
    assert first == 0
    assert wrong.groups[1] == requests
    assert len(outcomes) == group
    for outcome in outcomes:
        assert isinstance(outcome, RuntimeError), outcomes
        assert "one result per request" in str(outcome)
    assert after == 14


def test_a_waiter_cancelled_before_its_group_forms_does_not_break_the_others() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder)

    async def main() -> tuple[list[int], bool, int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, [1, 2, 3])
        tail[1].cancel()
        await _settle()
        recorder.release()
        kept = list(await asyncio.gather(head, tail[0], tail[2]))
        with pytest.raises(asyncio.CancelledError):
            await tail[1]
        return kept, tail[1].cancelled(), await coalescer.submit(7)

    kept, cancelled, after = _run(coalescer, main)
    assert kept == [0, 2, 6]
    assert cancelled
    assert after == 14
    # The cancelled request was already waiting: it was still handled, its result dropped.
    assert recorder.groups == [[0], [1, 2, 3], [7]]


@pytest.mark.parametrize("fail", [False, True], ids=["results", "exception"])
def test_a_waiter_cancelled_while_its_group_is_in_process_does_not_break_the_others(
    fail: bool,
) -> None:
    crowd = Crowd()

    async def process(batch: list[int], formed: Formed) -> list[int]:
        results = await crowd(batch, formed)
        if fail and batch == [0, 1, 2]:
            raise ValueError("refused")
        return results

    coalescer = _coalescer(process)

    async def main() -> tuple[list[int | BaseException], int]:
        tasks = [asyncio.create_task(coalescer.submit(n)) for n in range(3)]
        await _settle()
        assert crowd.groups == [[0, 1, 2]]
        tasks[1].cancel()
        await _settle()
        crowd.release()
        outcomes = list(await asyncio.gather(tasks[0], tasks[2], return_exceptions=True))
        assert tasks[1].cancelled()
        return outcomes, await coalescer.submit(7)

    outcomes, after = _run(coalescer, main)
    if fail:
        assert [type(outcome) for outcome in outcomes] == [ValueError, ValueError]
    else:
        assert outcomes == [0, 4]
    assert after == 14
    assert crowd.groups == [[0, 1, 2], [7]]


class FormedTwice:
    """A ``process`` whose first group calls ``formed()`` when the test sets ``form`` and
    again when it sets ``again``; every group then waits for ``release``. Later groups
    never call ``formed()``: each stays the one forming until it returns."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.entered = asyncio.Event()
        self.form = asyncio.Event()
        self.again = asyncio.Event()
        self.release = asyncio.Event()
        self.second_call_made = False

    async def __call__(self, requests: list[int], formed: Formed) -> list[int]:
        self.groups.append(list(requests))
        if len(self.groups) == 1:
            self.entered.set()
            await self.form.wait()
            formed()
            await self.again.wait()
            formed()
            self.second_call_made = True
        await self.release.wait()
        return [r * 2 for r in requests]


def test_formed_called_twice_is_harmless_and_starts_no_extra_group() -> None:
    """The second ``formed()`` of the first group comes while the second group is the one
    forming: requests that arrive then must still wait for the second group."""
    process = FormedTwice()
    coalescer = _coalescer(process, concurrency=3)

    async def main() -> list[int]:
        head = asyncio.create_task(coalescer.submit(0))
        await process.entered.wait()
        middle = [asyncio.create_task(coalescer.submit(n)) for n in (1, 2)]
        await _settle()
        assert process.groups == [[0]]
        process.form.set()
        await _settle()
        assert process.groups == [[0], [1, 2]]
        process.again.set()
        await _settle()
        assert process.second_call_made
        tail = [asyncio.create_task(coalescer.submit(n)) for n in (3, 4)]
        await _settle()
        assert process.groups == [[0], [1, 2]]  # the second group has not formed yet
        process.release.set()
        return list(await asyncio.gather(head, *middle, *tail))

    assert _run(coalescer, main) == [0, 2, 4, 6, 8]
    assert process.groups == [[0], [1, 2], [3, 4]]


def test_stop_finishes_waiting_requests_and_groups_in_progress_then_refuses_new_ones() -> None:
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, concurrency=2, max_group=4)

    async def main() -> list[int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, list(range(1, 11)))
        stopper = asyncio.create_task(coalescer.stop(timeout=WAIT))
        await _settle()
        assert not stopper.done()  # it waits for the held group and those behind it
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(99)
        recorder.release()
        await stopper
        # stop() returned only once every request that was waiting had been answered.
        assert all(task.done() for task in (head, *tail))
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(100)
        return [task.result() for task in (head, *tail)]

    assert _run(coalescer, main) == [n * 2 for n in range(11)]
    assert max(len(group) for group in recorder.groups) <= 4
    assert sorted(r for group in recorder.groups for r in group) == list(range(11))


@pytest.mark.parametrize("let_form", [False, True], ids=["before-formed", "after-formed"])
def test_stop_with_a_stuck_group_returns_after_the_timeout_and_fails_the_waiting(
    let_form: bool,
) -> None:
    """The requests still waiting get :class:`CoalescerStopped` and are never handled; the
    stuck group's own waiter is left to its ``process`` (which may still commit), and gets
    its result when that returns."""
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder, concurrency=1)

    async def main() -> tuple[float, list[int | BaseException], bool, int]:
        head, tail = await _queue_behind_first(coalescer, recorder, 0, [1, 2])
        if let_form:  # the next turn is then waiting for the one slot
            recorder.let_form()
            await _settle()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await coalescer.stop(timeout=STUCK)
        took = loop.time() - started
        outcomes = await asyncio.gather(*tail, return_exceptions=True)
        head_waiting = not head.done()
        recorder.release()
        first = await head
        await _settle()
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(3)
        return took, outcomes, head_waiting, first

    took, outcomes, head_waiting, first = _run(coalescer, main)
    assert STUCK * 0.95 <= took < STUCK + 1.0
    assert [type(outcome) for outcome in outcomes] == [CoalescerStopped, CoalescerStopped]
    assert head_waiting
    assert first == 0
    assert recorder.groups == [[0]]  # the requests told "stopped" were never handled


def test_stop_before_any_request_refuses_new_ones() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder)

    async def main() -> None:
        await coalescer.stop(timeout=WAIT)
        with pytest.raises(CoalescerStopped):
            await coalescer.submit(1)

    _run(coalescer, main)
    assert recorder.groups == []


@pytest.mark.parametrize(
    ("concurrency", "max_group"),
    [(0, 16), (1, 0), (-1, 16), (1, -3), (0, 0)],
)
def test_the_constructor_refuses_concurrency_or_max_group_below_one(
    concurrency: int, max_group: int
) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        LoopCoalescer(Recorder(), concurrency=concurrency, max_group=max_group, name="refused")


def test_the_constructor_accepts_one_and_one() -> None:
    recorder = Recorder()
    coalescer = _coalescer(recorder, concurrency=1, max_group=1)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(coalescer.submit(n) for n in range(3))))

    assert _run(coalescer, main) == [0, 2, 4]
    assert recorder.groups == [[0], [1], [2]]


def test_a_group_cancelled_at_loop_shutdown_starts_no_new_group() -> None:
    """``asyncio.run`` ends with the first group held and two requests waiting, without
    ``stop()``: it cancels every task, the turn among them ("nobody is left waiting"), so
    nothing more should be handled."""
    recorder = Recorder(hold=True)
    coalescer = _coalescer(recorder)

    async def main() -> None:
        async with asyncio.timeout(WAIT):
            await _queue_behind_first(coalescer, recorder, 0, [1, 2])
            assert recorder.groups == [[0]]

    asyncio.run(main())
    assert recorder.groups == [[0]]


def test_a_cancelled_turn_that_had_formed_leaves_the_next_group_alone() -> None:
    """Only the forming turn owns the requests waiting to form a group: a turn cancelled
    after ``formed()`` fails its own group, and the next group is still handled."""
    gate = asyncio.Event()

    async def process(requests: list[str], formed: Callable[[], None]) -> list[str]:
        formed()
        if requests[0] == "a":
            await gate.wait()
        return [r.upper() for r in requests]

    async def main() -> tuple[BaseException | None, str]:
        coalescer: LoopCoalescer[str, str] = LoopCoalescer(
            process, concurrency=1, max_group=8, name="t"
        )
        first = asyncio.ensure_future(coalescer.submit("a"))
        await asyncio.sleep(0.01)  # [a] in progress, formed, holding the only slot
        turns_of_a = set(coalescer._turns)
        second = asyncio.ensure_future(coalescer.submit("b"))
        await asyncio.sleep(0.01)  # the next turn forms, waiting for the slot
        for turn in turns_of_a:
            turn.cancel()
        await asyncio.sleep(0.01)
        error = first.exception() if first.done() else None
        answer = await asyncio.wait_for(second, WAIT)
        await coalescer.stop()
        return error, answer

    error, answer = asyncio.run(main())
    assert isinstance(error, CoalescerStopped)
    assert answer == "B"
