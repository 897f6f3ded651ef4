"""remember when a client was last suspended

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:00:00

A client's tokens are refused while it is suspended, and the tokens issued before a
suspension stay refused after the client is made active again (CONTRACT.md: "any token
of a client that has since been suspended"). Access tokens are self-contained JWTs, so
the rule is a time: tokens issued at or before ``suspended_at`` are refused.

Also the index on ``oauth_clients.updated_at`` that the model has always declared and
0001 never created: every node reads the clients changed since its last poll, once a
second.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.db.base import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(sa.Column("suspended_at", UTCDateTime(), nullable=True))
    op.create_index("ix_oauth_clients_updated_at", "oauth_clients", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_oauth_clients_updated_at", table_name="oauth_clients")
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("suspended_at")
