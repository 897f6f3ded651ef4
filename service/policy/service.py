"""Reading and changing the verdict policy (append-only versions, audited)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from audit.context import RequestAudit
from audit.recorder import record_in_session
from schemas.enums import Verdict
from schemas.policy import PolicyIn, PolicyOut
from service.db.base import utcnow
from service.db.hooks import after_commit
from service.policy import repository
from service.policy.cache import PolicyCache, PolicySnapshot, snapshot_of
from service.policy.rules import (
    CATEGORIES,
    REQUIRED_STATUSES,
    SEVERITIES,
    STATUSES,
    RawMatrix,
    RawStatuses,
    rule_errors,
    storage_form,
)
from service.problems import ProblemError


def _out(snapshot: PolicySnapshot) -> PolicyOut:
    return PolicyOut.model_validate(
        {
            "version": snapshot.version,
            "created_at": snapshot.created_at,
            "created_by": snapshot.created_by,
            "matrix": snapshot.matrix,
            "registration_status": snapshot.registration_status,
        }
    )


def _current(session: Session) -> PolicySnapshot:
    row = repository.current(session)
    if row is None:
        raise ProblemError("service-unavailable")
    return snapshot_of(row)


def get_current(session: Session) -> PolicyOut:
    return _out(_current(session))


def _changes(
    before: PolicySnapshot, matrix: RawMatrix, statuses: RawStatuses
) -> list[dict[str, object]]:
    """The cells and status rules that differ, for the audit trail."""
    changes: list[dict[str, object]] = []
    for category in CATEGORIES:
        for severity in SEVERITIES:
            old = before.matrix.get(category, {}).get(severity)
            new = matrix[category][severity]
            if old != new:
                changes.append({"rule": f"{category}.{severity}", "from": old, "to": new})
    for status in STATUSES:
        old_status, new_status = before.registration_status.get(status), statuses.get(status)
        if old_status != new_status:
            changes.append({"rule": status, "from": old_status, "to": new_status})
    return changes


def _fixed_status_errors(statuses: RawStatuses) -> list[tuple[str, str]]:
    """A revoked or deregistered merchant is RESTRICTED whatever its records (DOMAIN.md):
    not the policy's to change (the engine applies it whatever a stored policy says)."""
    restricted = Verdict.RESTRICTED.value
    return [
        (f"registration_status.{status}", "A revoked or deregistered merchant is RESTRICTED")
        for status in REQUIRED_STATUSES
        if statuses.get(status) not in (None, restricted)
    ]


def replace(
    session: Session, ctx: RequestAudit, cache: PolicyCache, actor: str, data: PolicyIn
) -> PolicyOut:
    """Validate completely, then append the next version (the old ones stay)."""
    matrix = {c.value: {s.value: v.value for s, v in row.items()} for c, row in data.matrix.items()}
    statuses = {s.value: (v.value if v else None) for s, v in data.registration_status.items()}
    errors = rule_errors(matrix, statuses) + _fixed_status_errors(statuses)
    if errors:
        raise ProblemError("validation-failed", errors=errors)
    before = _current(session)
    if data.version is not None and data.version != before.version:
        # Made from an earlier version: another administrator's change came in between.
        raise ProblemError("conflict", extra={"current_version": before.version})
    stored = storage_form(matrix, statuses)
    version = before.version + 1
    ctx.target_type, ctx.target_id = "verdict_policy", str(version)
    try:
        row = repository.append(session, version=version, rules=stored, at=utcnow(), by=actor)
    except IntegrityError:  # another administrator appended this version first
        raise ProblemError("conflict") from None
    ctx.details.update(
        before={"version": before.version},
        after={"version": version},
        changes=_changes(before, matrix, statuses),
    )
    record_in_session(session, ctx, 200)
    after_commit(session, cache.invalidate)
    return _out(snapshot_of(row))
