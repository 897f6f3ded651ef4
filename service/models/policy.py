"""The verdict policy: data, versioned, never code."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, UTCDateTime


class VerdictPolicy(Base):
    """Append-only versions; the highest version is in force."""

    __tablename__ = "verdict_policies"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rules: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(64))
