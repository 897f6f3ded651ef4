"""an individual business's name with its owner's name masked

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 19:00:00

An individual business (``92`` codes) without a trade name is registered under its
owner's name, and trade names often hold it (``河西区张建国小吃店``): the name gave away
the person whose name the masked ``legal_representative`` hides. ``name_masked`` is the
name with the owner's name masked, shown wherever the owner's name is masked; null when
the name does not hold it.

Existing rows are filled in here, reading the owner's name as the API does (decrypted
with the settings' key ring); a row whose owner's name cannot be decrypted (another
master key) is left null and logged, and gets its masked name when next written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.crypto import DecryptionError, KeyRing, load_keyring
from service.personal_data import mask_owner_in_name, unseal
from service.settings import load_settings

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("creditshare.migrations")

_BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.add_column(sa.Column("name_masked", sa.String(200), nullable=True))
    _fill_in()


def _fill_in() -> None:
    connection = op.get_bind()
    personal = sa.text(
        "SELECT uscc, name, legal_representative_enc FROM merchants "
        "WHERE legal_representative_enc IS NOT NULL "
        "AND (entity_type = 'INDIVIDUAL_BUSINESS' OR uscc LIKE '92%') "
        "AND uscc > :after ORDER BY uscc LIMIT :n"
    )
    update = sa.text("UPDATE merchants SET name_masked = :masked WHERE uscc = :uscc")
    keyring: KeyRing | None = None
    after, undecryptable = "", 0
    while True:
        rows = connection.execute(personal, {"after": after, "n": _BATCH}).all()
        if not rows:
            break
        after = rows[-1][0]
        if keyring is None:
            keyring = _keyring()
        changes = []
        for uscc, name, sealed in rows:
            try:
                owner = unseal(keyring, sealed, uscc=uscc, field="legal_representative")
            except DecryptionError:  # another master key: left to the row's next write
                undecryptable += 1
                continue
            masked = mask_owner_in_name(name, owner)
            if masked is not None:
                changes.append({"uscc": uscc, "masked": masked})
        if changes:
            connection.execute(update, changes)
    if undecryptable:
        log.warning(
            "%d individual businesses' owner names could not be decrypted: their names "
            "are masked when next written",
            undecryptable,
        )


def _keyring() -> KeyRing:
    return load_keyring(load_settings())


def downgrade() -> None:
    with op.batch_alter_table("merchants") as batch:
        batch.drop_column("name_masked")
