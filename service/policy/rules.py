"""The verdict policy as data: validation, storage form, and compilation for evaluation.

A policy is stored as JSON ``{"matrix": {category: {severity: verdict}},
"registration_status": {status: verdict | null}}``. :func:`compile_rules` turns it into
:class:`Rules` once per version, so the hot path looks up integer ranks in a dict and
never parses JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.enums import Category, RegistrationStatus, Severity, Verdict

CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)
SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
STATUSES: tuple[str, ...] = tuple(s.value for s in RegistrationStatus)
RANKED: tuple[Verdict, Verdict, Verdict] = (Verdict.CLEAR, Verdict.CAUTION, Verdict.RESTRICTED)
"""Verdicts from best to worst; a verdict's rank is its index."""
RANK: dict[str, int] = {v.value: i for i, v in enumerate(RANKED)}

POSITIVE_CATEGORIES = frozenset({Category.HONOR.value})
"""Positive information: its cells must be CLEAR, and it never worsens a verdict."""
REQUIRED_STATUSES: tuple[str, ...] = (
    RegistrationStatus.REVOKED.value,
    RegistrationStatus.DEREGISTERED.value,
)
"""The statuses a policy must give a rule for; a merchant in one is RESTRICTED whatever
its records (DOMAIN.md), so that rule can only be RESTRICTED."""

UNKNOWN_CELL_RANK = RANK[Verdict.CAUTION.value]
"""Rank of a counting record whose category/severity the policy does not name.

Cannot happen with validated data (the matrix covers every enum value and records are
validated on import); should it happen anyway, such a record deserves a closer look
(CAUTION) rather than being ignored or restricting a merchant on no stated rule.
"""

RawMatrix = Mapping[str, Mapping[str, str]]
RawStatuses = Mapping[str, str | None]


@dataclass(frozen=True, slots=True)
class Rules:
    """A compiled policy: verdict ranks per ``(category, severity)`` and per status."""

    cells: Mapping[tuple[str, str], int]
    statuses: Mapping[str, int | None]


def rule_errors(matrix: RawMatrix, statuses: RawStatuses) -> list[tuple[str, str]]:
    """Everything wrong with a policy, as ``(field, message)`` pairs (empty: valid).

    Complete means every category with every severity, and a rule for REVOKED and
    DEREGISTERED; names outside the vocabularies and verdicts outside the enum are
    errors too (the API schema already refuses those, stored data is checked here).
    """
    errors: list[tuple[str, str]] = []
    for category in matrix:
        if category not in CATEGORIES:
            errors.append((f"matrix.{category}", "Unknown category"))
    for category in CATEGORIES:
        row = matrix.get(category)
        if row is None:
            errors.append((f"matrix.{category}", "Missing category"))
            continue
        for severity in row:
            if severity not in SEVERITIES:
                errors.append((f"matrix.{category}.{severity}", "Unknown severity"))
        for severity in SEVERITIES:
            field = f"matrix.{category}.{severity}"
            verdict = row.get(severity)
            if verdict is None:
                errors.append((field, "Missing verdict"))
            elif verdict not in RANK:
                errors.append((field, "Unknown verdict"))
            elif category in POSITIVE_CATEGORIES and verdict != Verdict.CLEAR.value:
                errors.append((field, "Positive information must be CLEAR"))
    for status, verdict in statuses.items():
        if status not in STATUSES:
            errors.append((f"registration_status.{status}", "Unknown registration status"))
        elif verdict is not None and verdict not in RANK:
            errors.append((f"registration_status.{status}", "Unknown verdict"))
    for status in REQUIRED_STATUSES:
        if statuses.get(status) is None:
            errors.append((f"registration_status.{status}", "A verdict is required"))
    return errors


def storage_form(matrix: RawMatrix, statuses: RawStatuses) -> dict[str, object]:
    """The JSON stored for a policy, in the vocabularies' order (stable diffs)."""
    return {
        "matrix": {c: {s: str(matrix[c][s]) for s in SEVERITIES} for c in CATEGORIES},
        "registration_status": {
            s: (None if statuses.get(s) is None else str(statuses[s])) for s in STATUSES
        },
    }


def split_storage_form(raw: Mapping[str, object]) -> tuple[RawMatrix, RawStatuses]:
    """``(matrix, registration_status)`` of stored JSON; ValueError if it is not shaped so."""
    matrix, statuses = raw.get("matrix"), raw.get("registration_status")
    if not isinstance(matrix, Mapping) or not isinstance(statuses, Mapping):
        raise ValueError("a policy needs a matrix and registration_status rules")
    if not all(isinstance(row, Mapping) for row in matrix.values()):
        raise ValueError("every matrix row must be an object")
    return matrix, statuses


def compile_rules(raw: Mapping[str, object]) -> Rules:
    """Compile stored policy JSON; ValueError (with the fields) if it is not a valid policy."""
    matrix, statuses = split_storage_form(raw)
    errors = rule_errors(matrix, statuses)
    if errors:
        raise ValueError("invalid verdict policy: " + "; ".join(f"{f}: {m}" for f, m in errors))
    cells = {(c, s): RANK[matrix[c][s]] for c in CATEGORIES for s in SEVERITIES}
    ranks: dict[str, int | None] = {}
    for status in STATUSES:
        verdict = statuses.get(status)
        ranks[status] = None if verdict is None else RANK[verdict]
    return Rules(cells=cells, statuses=ranks)
