"""Which status changes an administrator may make to a credit record (DOMAIN.md).

* ``ACTIVE``: an objection is raised (``UNDER_OBJECTION``), the subject's credit is
  repaired (``REPAIRED``), publication ends (``EXPIRED``) or the authority withdraws
  the decision (``REVOKED``).
* ``UNDER_OBJECTION``: the investigation confirms the record (back to ``ACTIVE``;
  corrections go along with it), revokes it, or the record is repaired or expires
  meanwhile.
* ``REPAIRED``: a repair obtained by false commitments is annulled (back to
  ``ACTIVE``), or the underlying decision is withdrawn (``REVOKED``).
* ``EXPIRED``: only ``REVOKED`` (the decision was withdrawn after publication ended).
  Publication that ended too early is a correction of ``publicity_until`` followed by
  a new source record, not a resurrection.
* ``REVOKED`` is final: a decision issued again is a new record with its own document.

Imports are not bound by this table: a source's own data is authoritative and every
change it brings is kept in the history anyway.
"""

from __future__ import annotations

from typing import Final

from schemas.enums import RecordStatus

ALLOWED: Final[dict[RecordStatus, frozenset[RecordStatus]]] = {
    RecordStatus.ACTIVE: frozenset(
        {
            RecordStatus.UNDER_OBJECTION,
            RecordStatus.REPAIRED,
            RecordStatus.EXPIRED,
            RecordStatus.REVOKED,
        }
    ),
    RecordStatus.UNDER_OBJECTION: frozenset(
        {RecordStatus.ACTIVE, RecordStatus.REPAIRED, RecordStatus.EXPIRED, RecordStatus.REVOKED}
    ),
    RecordStatus.REPAIRED: frozenset({RecordStatus.ACTIVE, RecordStatus.REVOKED}),
    RecordStatus.EXPIRED: frozenset({RecordStatus.REVOKED}),
    RecordStatus.REVOKED: frozenset(),
}


def allowed_next(current: str) -> list[str]:
    """The statuses a record in ``current`` may move to, in a stable order."""
    try:
        status = RecordStatus(current)
    except ValueError:
        return []
    return sorted(s.value for s in ALLOWED[status])


def is_allowed(current: str, new: str) -> bool:
    return new in allowed_next(current)
