"""The app's single checks: validated requests in, answers out, issued in groups.

One per app (``app.state.single_checks``). The coalescer's worker threads hand it the
requests that arrived together; it reads and decides, lets the next group form
(``Coalescer.handoff``), then writes the group in one
transaction (SQLite's writers wait on the write gate, as for batches), commits it, and
only then marks each request's audit event as recorded, so a request whose group failed
leaves no success and gets a clean 503.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from auth.principal import Principal
from service.credit_checks.coalescer import Coalescer
from service.credit_checks.issuing import Issuer
from service.credit_checks.receipt import ReceiptSigner
from service.credit_checks.runner import check_runner
from service.credit_checks.single import (
    CheckRequest,
    CheckResult,
    IssuerFor,
    forget_issued,
    issue_group,
    mark_recorded,
    store_group,
)
from service.db.engine import is_sqlite
from service.db.round_trips import without_transaction
from service.policy.cache import policy_cache
from service.problems import ProblemError
from service.ratelimit.charging import ChargeOutcome, charge_each
from service.state import state_singleton
from service.usage.plans import rate_plans

log = logging.getLogger("creditshare.checks")

SQLITE_WORKERS = 1
"""SQLite has one writer. (Handling groups on the event loop itself, without a thread, was
measured too: no better within the noise, and the loop would block on the write gate.)"""
SERVER_DB_WORKERS = 3
"""Groups form one at a time (the coalescer's handoff, once a group is read and decided):
while one is being formed, two others can be writing and committing. Against two threads
that each took a group whenever idle, groups are larger and cost less CPU per check
(bench/RESULTS.md, sixth pass)."""
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

    async def submit(self, request: CheckRequest) -> CheckResult:
        return await self._coalescer.submit(request)

    def stop(self) -> None:
        self._coalescer.stop()

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
        return service

    return state_singleton(state, "single_checks", build)
