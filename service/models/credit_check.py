"""Credit checks, stored exactly as issued."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime


class CreditCheck(Base):
    """``body`` is the JSON document returned when the check was issued; a later read
    returns it byte for byte, whatever happened to the data or the policy since."""

    __tablename__ = "credit_checks"
    __table_args__ = (Index("ix_credit_checks_client_id_id", "client_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    uscc: Mapped[str] = mapped_column(String(18))
    purpose: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(200))
    consent_ref: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
