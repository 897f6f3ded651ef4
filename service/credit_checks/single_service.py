"""The app's single checks: validated requests in, answers out, issued in groups.

One per app (``app.state.single_checks``). Requests that arrive together are issued as
one group: one read, one charge to the limiter, one write, then each request is marked
recorded (its audit event is written), so a request whose group failed leaves no success
and gets a clean 503.

The groups are tasks of the event loop that serves the app (``loop_coalescer.py``); a
group lets the next one form once it is read and decided, before its write.

* On PostgreSQL the read and the write run on the loop's own connections
  (``service.db.async_pg``), the limiter's round trip awaited.
* On SQLite the read, the decision and the write run on the loop itself, without a
  thread hand-off or contention for the GIL: SQLite is in the process, and its work is
  CPU. Only waiting for the write gate (SQLite's one writer; taken at once when free) is
  left to the writer thread. When a writer that does not take the gate holds SQLite's
  lock, the loop does not wait for it either: its attempt fails at once (busy_timeout
  0), gives the gate back and is made again a little later. The WAL's checkpoints are the
  checkpointer thread's (``service.db.wal_checkpointer``), never a commit's on the loop
  (bench/RESULTS.md, tenth pass).

A request that comes on another event loop (a test's own, or an app served without its
lifespan) is issued by the thread coalescer (``coalescer.py``) the same way.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy.exc import OperationalError

from auth.principal import Principal
from service.credit_checks.coalescer import Coalescer, CoalescerStopped
from service.credit_checks.issuing import Issuer
from service.credit_checks.loop_coalescer import Formed, LoopCoalescer
from service.credit_checks.receipt import ReceiptSigner
from service.credit_checks.runner import check_runner
from service.credit_checks.single import (
    AsyncChargeEach,
    CheckRequest,
    CheckResult,
    IssuedGroup,
    IssuerFor,
    decide_group_async,
    forget_issued,
    issue_group,
    issue_group_async,
    mark_recorded,
    read_subjects,
    store_group,
    store_group_async,
)
from service.db.async_pg import AsyncConnections, ConnectionsClosed
from service.db.engine import SQLITE_BUSY_TIMEOUT_MS, is_sqlite
from service.db.round_trips import without_transaction
from service.db.write_gate import write_gate
from service.policy.cache import policy_cache
from service.problems import ProblemError
from service.ratelimit.charging import ChargeOutcome, charge_each, charge_each_async
from service.ratelimit.plans import RatePlan
from service.state import state_singleton
from service.usage.plans import rate_plans

log = logging.getLogger("creditshare.checks")

SQLITE_WORKERS = 1
"""SQLite has one writer (the thread coalescer, for a loop that does not serve the app)."""
SERVER_DB_WORKERS = 3
"""On a server database, when the event loop cannot have the groups (another loop than
the one they belong to): one group forms while two others write (bench/RESULTS.md, sixth
pass)."""
LOOP_GROUPS = 3
"""Groups in progress at once per event loop, each with a connection of its own: one
forming, two writing (as the threads were; bench/RESULTS.md, ninth pass)."""
SQLITE_LOOP_GROUPS = 2
"""On SQLite: one group forming while another writes or waits for the write gate
(bench/RESULTS.md, tenth pass)."""
BUSY_RETRY_FIRST_SECONDS = 0.001
BUSY_RETRY_MAX_SECONDS = 0.05
"""A write that found SQLite's lock taken by a writer outside the gate is tried again
after 1 ms, then twice as long each time, at most 50 ms apart."""
MAX_GROUP = 128


class SingleChecks:
    def __init__(self, state: Any) -> None:
        self._state = state
        self._one_writer = is_sqlite(state.engine)
        self._coalescer: Coalescer[CheckRequest, CheckResult] = Coalescer(
            self._issue,
            threads=SQLITE_WORKERS if self._one_writer else SERVER_DB_WORKERS,
            max_group=MAX_GROUP,
            name="credit-checks",
        )
        self._on_loop: _LoopGroups | None = None

    async def submit(self, request: CheckRequest) -> CheckResult:
        """The request's answer; ``503`` once the service is shutting down."""
        try:
            loop = asyncio.get_running_loop()
            if loop is not self._state.serving_loop:
                # Not the loop that serves the app (and will close what is bound to it):
                # a test's own, or an app served without its lifespan.
                return await self._coalescer.submit(request)
            if self._on_loop is None or self._on_loop.loop is not loop:
                self._on_loop = _LoopGroups(self._state, loop)
            return await self._on_loop.groups.submit(request)
        except (CoalescerStopped, ConnectionsClosed):
            raise ProblemError("service-unavailable") from None

    def stop(self) -> None:
        self._coalescer.stop()

    async def stop_on_loop(self) -> None:
        """On the app's event loop, at shutdown: the groups in progress finish, then the
        loop's connections close."""
        on_loop = self._on_loop
        if on_loop is not None and on_loop.loop is asyncio.get_running_loop():
            self._on_loop = None  # an app served again, on another loop, gets its own
            await on_loop.stop()

    def _issue(self, requests: list[CheckRequest]) -> list[CheckResult]:
        state = self._state
        now = datetime.now(UTC)
        issuer_for = issuers(state)
        plans = rate_plans(state).get

        def charge(principals: Sequence[Principal]) -> list[ChargeOutcome]:
            clients = [(p.client_id, p.rate_plan) for p in principals]
            return charge_each(state.limiter, plans, clients)

        committed = False
        try:
            # Plain connections, no ORM session: a group needs none of its bookkeeping.
            engine = state.engine
            if self._one_writer:
                # Read and decide first, then write: the write gate (SQLite's one writer)
                # is held only for the inserts and the commit.
                with engine.connect() as reading:
                    group = issue_group(reading, requests, issuer_for, charge, now)
                self._coalescer.handoff()
                with check_runner(state).transaction_guard(), engine.begin() as connection:
                    store_group(connection, group)
            else:
                # A server database takes concurrent writers. Outside a transaction: the
                # read is one statement, and so is the write (both tables), which commits
                # on its own. Two round trips, no BEGIN or COMMIT (bench/RESULTS.md, fifth
                # and sixth passes).
                with engine.connect() as connection, without_transaction(connection):
                    group = issue_group(connection, requests, issuer_for, charge, now)
                    self._coalescer.handoff()
                    store_group(connection, group)
            committed = True
            mark_recorded(requests, group)
        except Exception:
            if not committed:
                forget_issued(requests)
            raise
        return group.results


class _Issuing(NamedTuple):
    """What a group is issued with: the last arguments of ``issue_group_async`` and
    ``decide_group_async``, in their order."""

    issuer_for: IssuerFor
    charge: AsyncChargeEach
    now: datetime


_Stored = list[IssuedGroup]
"""A group's one entry once it is committed (empty: nothing was written)."""


class _LoopGroups:
    """The groups of one event loop (see the module docstring)."""

    def __init__(self, state: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._state = state
        self._connections: AsyncConnections | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._gate = write_gate(state.engine)
        if is_sqlite(state.engine):
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="credit-checks-writer")
            concurrency = SQLITE_LOOP_GROUPS
        else:
            self._connections = AsyncConnections(state.engine.url, LOOP_GROUPS)
            concurrency = LOOP_GROUPS
        self.groups: LoopCoalescer[CheckRequest, CheckResult] = LoopCoalescer(
            self._issue, concurrency=concurrency, max_group=MAX_GROUP, name="credit-checks"
        )

    async def stop(self) -> None:
        try:
            await self.groups.stop()
        finally:
            if self._connections is not None:
                await self._connections.close()
            if self._writer is not None:
                await asyncio.to_thread(self._writer.shutdown)

    async def _issue(self, requests: list[CheckRequest], formed: Formed) -> list[CheckResult]:
        state = self._state
        plan_names = {request.principal.rate_plan for request in requests}
        if _cached(state, plan_names):
            issuer_for, plans = _context(state, plan_names)
        else:
            # Reloading a cache reads the database through the engine: on a thread, so
            # that a slow or unreachable server never blocks the loop (once a second).
            issuer_for, plans = await asyncio.to_thread(_context, state, plan_names)

        async def charge(principals: Sequence[Principal]) -> list[ChargeOutcome]:
            clients = [(p.client_id, p.rate_plan) for p in principals]
            return await charge_each_async(state.limiter, plans, clients)

        how = _Issuing(issuer_for, charge, datetime.now(UTC))
        stored: _Stored = []  # the group, once committed
        try:
            if self._writer is not None:
                await self._issue_on_sqlite(requests, formed, how, stored)
            else:
                await self._issue_on_server(requests, formed, how, stored)
        except BaseException:
            if not stored:
                forget_issued(requests)
            raise
        (group,) = stored
        mark_recorded(requests, group)
        return group.results

    async def _issue_on_server(
        self, requests: list[CheckRequest], formed: Formed, how: _Issuing, stored: _Stored
    ) -> None:
        """PostgreSQL: the read and the write on a connection of the loop's, awaited."""
        assert self._connections is not None
        async with self._connections.connection() as connection:
            dialect = self._state.engine.dialect
            group = await issue_group_async(connection, dialect, requests, *how)
            formed()
            await store_group_async(connection, group)
            stored.append(group)

    async def _issue_on_sqlite(
        self, requests: list[CheckRequest], formed: Formed, how: _Issuing, stored: _Stored
    ) -> None:
        """SQLite (see the module docstring): read, decide and write on the loop itself;
        only waiting for the write gate is done on the writer thread."""
        engine = self._state.engine
        with engine.connect() as reading:
            subjects = read_subjects(reading, requests, how.now)
        group = await decide_group_async(engine.dialect, requests, subjects, *how)
        formed()
        await self._store(group)
        stored.append(group)

    async def _store(self, group: IssuedGroup) -> None:
        """The group in one transaction, on the loop, holding the write gate. SQLite's lock
        held by a writer that does not take the gate (an administrator's change, say) is
        never waited for here (``busy_timeout`` 0): the gate is given back and the write
        tried again a little later, for as long as the engine's writers would wait."""
        loop = self.loop
        deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = BUSY_RETRY_FIRST_SECONDS
        while True:
            await self._enter_gate()
            try:
                self._write_now(group)
            except OperationalError as exc:
                if not _is_busy(exc) or loop.time() >= deadline:
                    raise
            else:
                return
            finally:
                self._gate.release()
            await asyncio.sleep(delay)
            delay = min(2 * delay, BUSY_RETRY_MAX_SECONDS)

    async def _enter_gate(self) -> None:
        """The write gate, taken at once if free, else waited for on the writer thread
        (which only ever waits for the gate: whoever holds it never needs that thread, so
        it is always given back). Cancelled while waiting, the gate is released as soon as
        the thread gets it."""
        gate = self._gate
        if gate.try_acquire():
            return
        acquiring = self.loop.run_in_executor(self._writer, gate.acquire)
        try:
            await asyncio.shield(acquiring)
        except asyncio.CancelledError:
            acquiring.add_done_callback(
                lambda done: (
                    gate.release() if not done.cancelled() and done.exception() is None else None
                )
            )
            raise

    def _write_now(self, group: IssuedGroup) -> None:
        """The group's inserts and commit, without waiting for SQLite's lock."""
        with self._state.engine.connect() as connection:
            # On the driver's connection, outside SQLAlchemy's transaction (a statement
            # through the Connection would begin one).
            driver = connection.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.execute("PRAGMA busy_timeout=0")
            try:
                with connection.begin():
                    store_group(connection, group)
            finally:
                driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _is_busy(error: OperationalError) -> bool:
    return getattr(error.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def _cached(state: Any, plan_names: set[str]) -> bool:
    """Whether a group's signing key, policy and rate plans are at hand without a read."""
    plans = rate_plans(state)
    return (
        state.key_store.is_fresh()
        and policy_cache(state).is_fresh()
        and all(plans.is_fresh(name) for name in plan_names)
    )


def _context(state: Any, plan_names: set[str]) -> tuple[IssuerFor, Callable[[str], RatePlan]]:
    """Everything a group needs from the caches, resolved at once, before its first await
    (a cache that expired during the group's read would otherwise read the database on
    the loop): its issuers, and its clients' rate plans, each a plan or the problem that
    refuses it (``503``); a database error fails the group, as it would."""
    issuer_for = issuers(state)
    cache = rate_plans(state)
    resolved: dict[str, RatePlan | ProblemError] = {}
    for name in plan_names:
        try:
            resolved[name] = cache.get(name)
        except ProblemError as problem:
            resolved[name] = problem

    def plan(name: str) -> RatePlan:
        found = resolved.get(name)
        if found is None:  # not a plan of this group's clients: never read here
            raise ProblemError("service-unavailable")
        if isinstance(found, ProblemError):
            raise found
        return found

    return issuer_for, plan


def issuers(state: Any) -> IssuerFor:
    """Issuers under the current signing key and policy, read once (for a request or a
    group); no usable signing key is ``503`` for each check asked of them."""
    key = state.key_store.view().token_signer
    signer: ReceiptSigner | None = None
    if key is not None:
        try:
            signer = ReceiptSigner.of(key)
        except ValueError:
            log.error("the token signing key cannot sign receipts")
    policy = policy_cache(state).current()

    def issuer_for(principal: Principal) -> Issuer:
        if signer is None:
            raise ProblemError("service-unavailable")
        return Issuer(
            principal=principal,
            policy=policy,
            signer=signer,
            issuer=state.settings.issuer,
            keyring=state.keyring,
        )

    return issuer_for


def single_checks(state: Any) -> SingleChecks:
    """The app's single-check service, created on first use (stopped at shutdown)."""

    def build() -> SingleChecks:
        service = SingleChecks(state)
        stoppers = getattr(state, "background_stoppers", None)
        if stoppers is not None:
            stoppers.append(service.stop)
        loop_stoppers = getattr(state, "loop_stoppers", None)
        if loop_stoppers is not None:
            loop_stoppers.append(service.stop_on_loop)
        return service

    return state_singleton(state, "single_checks", build)
