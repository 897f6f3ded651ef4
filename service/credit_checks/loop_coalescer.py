"""Coalescing concurrent requests into groups handled on the event loop itself.

The asynchronous counterpart of ``coalescer.py``, for work whose waits can be awaited (on
PostgreSQL with Redis, a group's read, charge and write: ``single_service.py``): requests
that arrive together are handled as one group by ``process``, a coroutine, as one task of
the loop. No worker thread, so no hand-off between threads per request and no contention
for the GIL with the loop; while a group waits on a server, the loop goes on reading
requests and answering others.

The groups form as the coalescer's do: one at a time. A group takes everything waiting
(up to ``max_group``) when it starts, one turn of the loop after it is created, and the
next one starts forming only once ``process`` calls the ``formed`` callback it is given
(its group read and decided, before its write), or returns; so the next group gathers
every request that arrived meanwhile.
At most ``concurrency`` groups are in progress at once (one forming, the others writing):
a group beyond that waits, and its requests with it.

``process`` maps a list of requests to a list of results, in order, or raises, and then
every request of that group gets the exception. The coalescer belongs to the event loop
it is first used on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from service.credit_checks.coalescer import CoalescerStopped, Waiting, deliver

Req = TypeVar("Req")
Res = TypeVar("Res")

Formed = Callable[[], None]
"""Called by ``process`` once the next group may start forming (idempotent)."""


class LoopCoalescer(Generic[Req, Res]):
    """``await submit(request)`` -> the result ``process`` gave it in its group."""

    def __init__(
        self,
        process: Callable[[list[Req], Formed], Awaitable[list[Res]]],
        *,
        concurrency: int,
        max_group: int,
        name: str,
    ) -> None:
        if concurrency < 1 or max_group < 1:
            raise ValueError("concurrency and max_group must be >= 1")
        self._process = process
        self._max_group = max_group
        self._name = name
        self._slots = asyncio.Semaphore(concurrency)
        self._waiting: list[Waiting[Req, Res]] = []
        self._forming = False
        self._turns: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def submit(self, request: Req) -> Res:
        if self._stopped:
            raise CoalescerStopped(self._name)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Res] = loop.create_future()
        self._waiting.append(Waiting(request, future, loop))
        if not self._forming:
            self._start_forming()
        return await future

    async def stop(self, timeout: float = 10.0) -> None:
        """Refuse new requests, handle those already waiting, and wait for the groups in
        progress (graceful shutdown); after ``timeout`` seconds, whoever still waits for a
        group gets :class:`CoalescerStopped` (a group in progress answers its own requests
        when it ends: it may still commit)."""
        self._stopped = True
        deadline = asyncio.get_running_loop().time() + timeout
        while self._turns:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self._turns), timeout=left)
        waiting, self._waiting = self._waiting, []
        deliver(waiting, None, CoalescerStopped(self._name))

    def _start_forming(self) -> None:
        self._forming = True
        turn = asyncio.get_running_loop().create_task(self._turn(), name=self._name)
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)

    async def _turn(self) -> None:
        forming = True

        def formed() -> None:
            nonlocal forming
            if forming:
                forming = False
                self._forming = False
                if self._waiting:
                    self._start_forming()

        group: list[Waiting[Req, Res]] = []
        try:
            async with self._slots:
                # One turn of the loop first: the requests it has read meanwhile, whose
                # tasks have not reached submit() yet, join this group rather than form
                # the next one (larger groups, less CPU per check: bench/RESULTS.md, ninth
                # pass). Idle, that costs a lone request one turn of the loop.
                await asyncio.sleep(0)
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                if group:
                    results = await self._process([item.request for item in group], formed)
                    if len(results) != len(group):
                        raise RuntimeError("coalescer: one result per request expected")
                    deliver(group, results, None)
        except Exception as exc:  # every waiter of the group gets it; the loop goes on
            deliver(group, None, exc)
            formed()
        except BaseException:
            # Cancelled: the loop is shutting down without stop(). No group is started
            # any more; whoever waits for this turn's forming is told so (once formed,
            # they are the next turn's).
            waiting: list[Waiting[Req, Res]] = []
            if forming:
                forming = self._forming = False
                waiting, self._waiting = self._waiting, []
            deliver(group + waiting, None, CoalescerStopped(self._name))
            raise
        else:
            formed()
