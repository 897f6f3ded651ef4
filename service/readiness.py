"""Readiness: can this node serve? Database, Redis, and the audit sealing backlog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from service.runtime import Runtime


class Readiness:
    def __init__(
        self, runtime: Runtime, backlog: Callable[[], tuple[int, float]] | None = None
    ) -> None:
        self._runtime = runtime
        self._backlog = backlog

    def check(self) -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        try:
            with self._runtime.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception:
            checks["database"] = {"ok": False}
        if self._runtime.redis is not None:
            try:
                checks["redis"] = {"ok": bool(self._runtime.redis.ping())}
            except Exception:
                checks["redis"] = {"ok": False}
        if self._backlog is not None and checks["database"]["ok"]:
            try:
                count, age = self._backlog()
                limit = self._runtime.settings.audit_backlog_alarm_seconds
                checks["audit_sealing"] = {
                    "ok": age <= limit,
                    "unsealed": count,
                    "oldest_seconds": round(age, 1),
                }
            except Exception:
                checks["audit_sealing"] = {"ok": False}
        return checks

    def refresh_gauges(self) -> None:
        if self._backlog is None:
            return
        from service import metrics

        try:
            count, age = self._backlog()
        except Exception:
            return
        metrics.AUDIT_UNSEALED.set(count)
        metrics.AUDIT_OLDEST_UNSEALED_SECONDS.set(age)
