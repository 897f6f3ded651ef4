"""Coalescing concurrent requests into groups handled by one worker thread each.

Under load, dozens of single checks are in flight at once in every process. Handling
each in its own thread and transaction costs one thread hop, one session, one query,
two inserts and one commit per check. The coalescer instead queues them: a worker thread
takes everything waiting (up to ``max_group``), handles it as one group (one query, one
insert per table, one commit) and wakes the waiting coroutines with one call into their
event loop. A lone request is handled at once, alone, so latency without load is the
same; under load the group grows by itself with the time a turn takes (group commit).

With several worker threads, groups form one at a time: a worker takes the queue only
after the worker before it has handed the forming over (:meth:`Coalescer.handoff`,
called by ``process`` once its group no longer needs to be the only one in the making,
or at the latest when ``process`` returns). Otherwise an idle worker would take each
request the moment it arrived, and the groups would shrink to one or two requests while
the others wait on their round trips: the same work in several times as many turns. With
the handoff, the next group gathers everything that arrived meanwhile and the threads
still overlap one group's waiting (its commit) with the next group's work.

It knows nothing of checks: ``process`` maps a list of requests to a list of results,
in order, or raises, and then every request of that group gets the exception.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")

log = logging.getLogger("creditshare.coalescer")


@dataclass(slots=True)
class Waiting(Generic[Req, Res]):
    request: Req
    future: asyncio.Future[Res]
    loop: asyncio.AbstractEventLoop


def deliver(
    waiting: list[Waiting[Req, Res]], results: list[Res] | None, error: BaseException | None
) -> None:
    """On the waiters' event loop: resolve every future (a cancelled one is skipped)."""
    for index, item in enumerate(waiting):
        if item.future.done():
            continue
        if results is not None:
            item.future.set_result(results[index])
        else:
            assert error is not None
            item.future.set_exception(error)


class CoalescerStopped(RuntimeError):
    """A request arrived after :meth:`Coalescer.stop`."""


class Coalescer(Generic[Req, Res]):
    """``await submit(request)`` -> the result ``process`` gave it in its group."""

    def __init__(
        self,
        process: Callable[[list[Req]], list[Res]],
        *,
        threads: int,
        max_group: int,
        name: str,
    ) -> None:
        self._process = process
        self._threads_wanted = threads
        self._max_group = max_group
        self._name = name
        self._queue: queue.SimpleQueue[Waiting[Req, Res] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._forming = threading.Lock()
        """Held by the worker whose group is being formed (see the module docstring)."""
        self._worker = threading.local()

    async def submit(self, request: Req) -> Res:
        if self._stopped:
            raise CoalescerStopped(self._name)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Res] = loop.create_future()
        if not self._threads:
            self._start()
        self._queue.put(Waiting(request, future, loop))
        return await future

    def _handle(
        self, group: list[Waiting[Req, Res]]
    ) -> tuple[list[Res] | None, BaseException | None]:
        try:
            results = self._process([item.request for item in group])
            if len(results) != len(group):
                raise RuntimeError("coalescer: one result per request expected")
        except BaseException as exc:  # every waiter of the group gets it; the worker goes on
            return None, exc
        return results, None

    def _start(self) -> None:
        with self._lock:
            if self._threads or self._stopped:
                return
            for index in range(self._threads_wanted):
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Handle what is queued, then end the worker threads (graceful shutdown)."""
        with self._lock:
            self._stopped = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout)

    def _take_group(self, first: Waiting[Req, Res]) -> tuple[list[Waiting[Req, Res]], bool]:
        group = [first]
        while len(group) < self._max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return group, True
            group.append(item)
        return group, False

    def handoff(self) -> None:
        """From ``process``, on its worker thread: the next worker may form its group now
        (``process`` calls it once its group has been read and decided, before writing).
        Idempotent; elsewhere, and after the first call, a no-op."""
        if getattr(self._worker, "forming", False):
            self._worker.forming = False
            self._forming.release()

    def _work(self) -> None:
        while True:
            self._forming.acquire()
            self._worker.forming = True
            try:
                first = self._queue.get()
                if first is None:
                    return
                group, stop = self._take_group(first)
                outcome = self._handle(group)
            finally:
                self.handoff()
            self._hand_back(group, *outcome)
            if stop:
                return

    @staticmethod
    def _hand_back(
        group: list[Waiting[Req, Res]], results: list[Res] | None, error: BaseException | None
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for index, item in enumerate(group):
            by_loop.setdefault(item.loop, []).append(index)
        for loop, indexes in by_loop.items():
            waiting = [group[i] for i in indexes]
            mine = None if results is None else [results[i] for i in indexes]
            try:
                loop.call_soon_threadsafe(deliver, waiting, mine, error)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                log.warning("coalescer: results for a closed event loop dropped")
