"""Evaluating the verdict policy: a pure function of the rules, the merchant and the day.

Which records count is the contract's rule (CONTRACT.md, "Credit checks"): status
``ACTIVE`` or ``UNDER_OBJECTION``, and not past the end of their publicity: their
``publicity_until``, or for a negative record without one the end of the longest period
its severity may be published (DOMAIN.md: 3 months for MINOR, 1 year for GENERAL, 3
years for SERIOUS, counted from the decision date; "at the maximum period publication
ends on its own"). What they mean is the policy's (data, versioned). The verdict is the
worst of the policy's verdicts over the counting records and the registration-status
rule; a revoked or deregistered merchant is RESTRICTED whatever the stored rules say
(DOMAIN.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Protocol, TypedDict
from zoneinfo import ZoneInfo

from schemas.enums import RecordStatus, Severity, Verdict
from service.policy.rules import (
    CATEGORIES,
    POSITIVE_CATEGORIES,
    RANK,
    RANKED,
    REQUIRED_STATUSES,
    SEVERITIES,
    UNKNOWN_CELL_RANK,
    Rules,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
COUNTING_STATUSES = frozenset({RecordStatus.ACTIVE.value, RecordStatus.UNDER_OBJECTION.value})

MAX_PUBLICITY_MONTHS: dict[str, int] = {
    Severity.MINOR.value: 3,
    Severity.GENERAL.value: 12,
    Severity.SERIOUS.value: 36,
}
"""The longest a negative record of each severity is published (DOMAIN.md)."""
ALWAYS_RESTRICTED_STATUSES = frozenset(REQUIRED_STATUSES)
_RESTRICTED_RANK = RANK[Verdict.RESTRICTED.value]

_CATEGORY_ORDER = {c: i for i, c in enumerate(CATEGORIES)}
_SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}


class RecordLike(Protocol):
    """What the engine reads of a credit record (an ORM row, a Core row, a test double)."""

    @property
    def category(self) -> str: ...

    @property
    def severity(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def decided_on(self) -> date: ...

    @property
    def publicity_until(self) -> date | None: ...


class Reason(TypedDict):
    category: str
    severity: str
    count: int
    verdict: str


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the end of a shorter month."""
    years, month0 = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month0 + 1
    if day.day <= 28:
        return date(year, month, day.day)
    first_of_next = date(year + (month == 12), month % 12 + 1, 1)
    return date(year, month, min(day.day, (first_of_next - timedelta(days=1)).day))


def publicity_end(record: RecordLike) -> date | None:
    """The last day ``record`` is published: its ``publicity_until``, else (a negative
    record) its decision date plus its severity's longest period; None: no end (positive
    information, which never worsens a verdict)."""
    until = record.publicity_until
    if until is not None or record.category in POSITIVE_CATEGORIES:
        return until
    months = MAX_PUBLICITY_MONTHS.get(record.severity)
    return None if months is None else add_months(record.decided_on, months)


def is_counting(record: RecordLike, today: date) -> bool:
    """Whether ``record`` counts toward a verdict on ``today``."""
    if record.status not in COUNTING_STATUSES:
        return False
    until = publicity_end(record)
    return until is None or until >= today


def _reason_order(reason: Reason) -> tuple[int, int, int, str, str]:
    """Worst verdict first, then the vocabularies' order (severity worst first)."""
    return (
        -RANK[reason["verdict"]],
        _CATEGORY_ORDER.get(reason["category"], len(_CATEGORY_ORDER)),
        -_SEVERITY_ORDER.get(reason["severity"], -1),
        reason["category"],
        reason["severity"],
    )


def evaluate(
    rules: Rules,
    registration_status: str,
    records: Iterable[RecordLike],
    today: date,
) -> tuple[Verdict, list[Reason]]:
    """The verdict and its reasons (counting records grouped by category and severity).

    Positive categories (HONOR) appear among the reasons but never worsen the verdict,
    whatever the rules say (validation already requires them to be CLEAR).
    """
    status_rank = rules.statuses.get(registration_status)
    worst = 0 if status_rank is None else status_rank
    if registration_status in ALWAYS_RESTRICTED_STATUSES:
        worst = _RESTRICTED_RANK
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        if is_counting(record, today):
            cell = (record.category, record.severity)
            counts[cell] = counts.get(cell, 0) + 1
    reasons: list[Reason] = []
    for (category, severity), count in counts.items():
        rank = rules.cells.get((category, severity), UNKNOWN_CELL_RANK)
        if category in POSITIVE_CATEGORIES:
            rank = 0
        elif rank > worst:
            worst = rank
        reasons.append(
            {
                "category": category,
                "severity": severity,
                "count": count,
                "verdict": RANKED[rank].value,
            }
        )
    if len(reasons) > 1:
        reasons.sort(key=_reason_order)
    return RANKED[worst], reasons


def policy_day(now: datetime) -> date:
    """The calendar day publicity periods are judged on: today in Asia/Shanghai (where
    the deciding authorities date their decisions), not the server's local day."""
    return now.astimezone(SHANGHAI).date()
