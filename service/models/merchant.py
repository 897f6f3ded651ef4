"""Merchants (the registry) and their credit records, with append-only record history."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime


class Merchant(Base):
    """One registered market entity, keyed by its USCC.

    Personal data (the legal representative of an individual business, an owner's
    id number) is stored encrypted, next to a masked copy that is safe to return
    to any client without decrypting on the hot path.
    """

    __tablename__ = "merchants"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_masked: Mapped[str | None] = mapped_column(String(200))
    """An individual business's name with its owner's name in it masked (``张建国小吃店``
    -> ``张**小吃店``), shown wherever the owner is; null when the name holds no owner's
    name (then the name itself is safe to show)."""
    entity_type: Mapped[str] = mapped_column(String(32))
    registration_status: Mapped[str] = mapped_column(String(16))
    registered_on: Mapped[date | None] = mapped_column(Date)
    legal_representative_enc: Mapped[str | None] = mapped_column(Text)
    legal_representative_masked: Mapped[str | None] = mapped_column(String(100))
    owner_id_enc: Mapped[str | None] = mapped_column(Text)
    owner_id_masked: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(300))
    legacy_code: Mapped[bool] = mapped_column(Boolean, default=False)
    org_code_warning: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, object] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    data_updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditRecord(Base):
    """The current state of one credit record; every change also lands in history."""

    __tablename__ = "credit_records"
    __table_args__ = (Index("uq_credit_records_source", "source", "source_record_id", unique=True),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    uscc: Mapped[str] = mapped_column(ForeignKey("merchants.uscc"), index=True)
    source: Mapped[str] = mapped_column(String(64))
    source_record_id: Mapped[str] = mapped_column(String(128))
    category: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20))
    authority: Mapped[str] = mapped_column(String(200))
    document_no: Mapped[str] = mapped_column(String(200))
    decided_on: Mapped[date] = mapped_column(Date)
    publicity_until: Mapped[date | None] = mapped_column(Date)
    summary: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecordHistory(Base):
    """Append-only: one row per version of a record, with who, when and why."""

    __tablename__ = "credit_record_history"
    __table_args__ = (Index("uq_record_history_version", "record_id", "version", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("credit_records.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    changed_by: Mapped[str] = mapped_column(String(64))
    change: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    snapshot: Mapped[dict[str, object]] = mapped_column(JSON)
