"""drop the unused index on credit_checks.uscc

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:00:00

No query reads stored checks by merchant: clients read their own (by id, or listed by
``client_id, id``) and compliance asks the audit trail (``ix_audit_events_uscc_pk``).
Every check paid for the index anyway: one more B-tree insert, at a random page since
codes arrive in no order.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain DROP/CREATE INDEX (no batch mode: SQLite needs no table copy for an index).
def upgrade() -> None:
    op.drop_index("ix_credit_checks_uscc", table_name="credit_checks")


def downgrade() -> None:
    op.create_index("ix_credit_checks_uscc", "credit_checks", ["uscc"], unique=False)
