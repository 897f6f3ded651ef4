"""A batch of up to 1000 checks for one purpose, set-based.

The purpose is checked once for the whole batch (403). Malformed codes become 422 items
and cost nothing; every other item costs one check of the quota, all or nothing (429 for
the whole batch; ``service.ratelimit.charging`` says how a batch is charged to the
burst bucket), unknown merchants included (404 items). One query reads every merchant
and its counting records; checks and audit events are inserted with one statement each.

Audit: the request leaves its own event (``credit_check.batch``, with counts), and every
item that was checked (200 or 404) leaves one ``credit_check.create`` event with its
``uscc``, ``purpose`` and check id, exactly like a single check, so that a merchant's
access log and the per-client statistics see batch checks too. They share the request's
``request_id``. Malformed items are counted in the request's event only: nothing was
looked up.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import event_values, record_rows_in_session
from schemas.credit_checks import BatchCreate
from service.credit_checks import repository
from service.credit_checks.document import timestamp
from service.credit_checks.issuing import (
    ACTION_CREATE,
    TARGET_TYPE,
    Charge,
    IssuedCheck,
    Issuer,
    issue,
    parse_code,
    require_purpose,
)
from service.ids import new_id
from service.policy.engine import policy_day

EVENT_ID_PREFIX = "evt"  # as audit.recorder.event_values names events


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One batch item: a check (200), an unknown merchant (404) or a bad code (422)."""

    uscc: str
    status: int
    body: bytes | None = None
    problem: str | None = None
    problem_extra: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: list[ItemResult]
    headers: dict[str, str]
    check_rows: list[dict[str, object]]
    item_events: list[dict[str, object]]


class _ItemEvents:
    """The events of batch items.

    ``event_values`` makes one template per status; each item's event is that template
    with its own id, ``uscc``, target and verdict (building 1000 ORM objects was a third
    of a batch's time).
    """

    def __init__(self, ctx: RequestAudit) -> None:
        self._ctx = ctx
        self._templates: dict[int, dict[str, object]] = {}
        self.rows: list[dict[str, object]] = []

    def _template(self, status: int, checked: bool) -> dict[str, object]:
        template = self._templates.get(status)
        if template is None:
            item = dataclasses.replace(
                self._ctx,
                action=ACTION_CREATE,
                uscc=None,
                target_type=TARGET_TYPE if checked else None,
                target_id=None,
                details={"batch": True},
                outcome=None,
                pending_event_id=None,
                recorded_event_id=None,
            )
            template = event_values(item, status)
            self._templates[status] = template
        return template

    def add(self, uscc: str, status: int, check: IssuedCheck | None) -> None:
        row = dict(self._template(status, check is not None))
        row["id"] = new_id(EVENT_ID_PREFIX)
        row["uscc"] = uscc
        if check is not None:
            details = row["details"]
            assert isinstance(details, dict)
            row["target_id"] = check.id
            row["details"] = {**details, "verdict": check.verdict}
        self.rows.append(row)


def create_batch(
    session: Session, ctx: RequestAudit, issuer: Issuer, charge: Charge, data: BatchCreate
) -> BatchOutcome:
    """Check every item (reading with ``session``); results in input order, and the rows
    :func:`store_batch` writes. ``charge``: the client's rate plan (``RateGate.charge``)."""
    now = datetime.now(UTC)
    today = policy_day(now)
    purpose = data.purpose.value
    require_purpose(issuer.principal, purpose)
    parsed = [parse_code(item.uscc) for item in data.items]
    wanted = {code for code, reason in parsed if reason is None or reason == "checksum"}
    subjects = repository.load_subjects(session, wanted, today)
    valid = [
        reason is None or (reason == "checksum" and code in subjects) for code, reason in parsed
    ]
    cost = sum(valid)
    headers = charge(cost) if cost else {}

    created_at = timestamp(now)
    results: list[ItemResult] = []
    rows: list[dict[str, object]] = []
    events = _ItemEvents(ctx)
    verdicts: Counter[str] = Counter()
    for item, (code, reason), ok in zip(data.items, parsed, valid, strict=True):
        if not ok:
            assert reason is not None
            results.append(
                ItemResult(code, 422, problem="invalid-uscc", problem_extra={"reason": reason})
            )
            continue
        subject = subjects.get(code)
        if subject is None:
            results.append(ItemResult(code, 404, problem="merchant-not-found"))
            events.add(code, 404, None)
            continue
        check = issue(
            issuer,
            subject,
            purpose=purpose,
            reference=item.reference,
            consent_ref=None,
            may_unmask=False,
            now=now,
            today=today,
            created_at=created_at,
        )
        rows.append(check.row)
        verdicts[check.verdict] += 1
        results.append(ItemResult(code, 200, body=check.body))
        events.add(code, 200, check)
    ctx.details.update(
        items=len(results),
        checked=len(rows),
        not_found=len(events.rows) - len(rows),
        invalid=len(results) - cost,
        verdicts=dict(verdicts),
    )
    return BatchOutcome(results=results, headers=headers, check_rows=rows, item_events=events.rows)


def store_batch(session: Session, ctx: RequestAudit, outcome: BatchOutcome) -> None:
    """The checks and every event of the batch, in the caller's write transaction."""
    repository.insert_checks(session, outcome.check_rows)
    record_rows_in_session(session, ctx, 200, *outcome.item_events)
