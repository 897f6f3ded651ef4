"""The API with the audit trail of credit checks switched off, for one purpose only:
measuring what auditing costs per check (`make bench` runs it beside the real app).
Never deploy this module."""

from __future__ import annotations

from typing import Any

import service.credit_checks.batch as batch_module
import service.credit_checks.service as check_service
from service.app import create_app


def _skip_event(session: Any, ctx: Any, status: int, *also: Any) -> None:
    ctx.recorded_event_id = "bench-no-audit"  # the middleware then writes nothing either


check_service.record_rows_in_session = _skip_event  # type: ignore[assignment]
batch_module.record_rows_in_session = _skip_event  # type: ignore[assignment]

app = create_app()
