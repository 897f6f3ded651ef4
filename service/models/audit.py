"""The audit trail: events (append-only), the sealed log, signed checkpoints, and the
leader lease of the sequencer.

Events never change once written: the sequencer does not update them, it appends
one ``audit_log`` row per event (its gapless ``seq`` and leaf hash), so the
database can refuse every UPDATE and DELETE on all three audit tables.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime

PK = BigInteger().with_variant(Integer(), "sqlite")


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_uscc_pk", "uscc", "pk"),
        Index("ix_audit_events_client_pk", "actor_client_id", "pk"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
    )

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_client_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(200))
    uscc: Mapped[str | None] = mapped_column(String(18))
    purpose: Mapped[str | None] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(8))
    status: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, object]] = mapped_column(JSON)


class AuditLogEntry(Base):
    """Position ``seq`` (1-based, gapless) of one event in the Merkle log."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=False)
    event_pk: Mapped[int] = mapped_column(ForeignKey("audit_events.pk"), unique=True)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditCheckpoint(Base):
    """A signed tree head over the first ``size`` entries, with the compact range
    (``frontier``) that lets the next batch extend the tree without rereading it."""

    __tablename__ = "audit_checkpoints"

    size: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    frontier: Mapped[list[str]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Lease(Base):
    """Leader election for background jobs through the database."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
