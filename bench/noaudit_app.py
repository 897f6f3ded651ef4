"""The API with the audit trail of credit checks switched off, for one purpose only:
measuring what auditing costs per check (`make bench` runs it beside the real app).
Never deploy this module."""

from __future__ import annotations

from typing import Any

import service.credit_checks.batch as batch_module
import service.credit_checks.single as single_module
from service.app import create_app
from service.db.bulk_insert import PreparedInsert


def _skip_event(session: Any, ctx: Any, status: int, *also: Any) -> None:
    ctx.recorded_event_id = "bench-no-audit"  # the middleware then writes nothing either


def _skip_events(dialect: Any, rows: Any) -> PreparedInsert:
    """Single checks: their events are not inserted (each request is still marked as
    recorded after the commit, so the middleware writes nothing either)."""
    return PreparedInsert(dialect.name, None, None)


def _no_event(ctx: Any, status: int, *, now: Any = None) -> dict[str, object]:
    """Nor built: only the id a request is marked with."""
    return {"id": "bench-no-audit"}


setattr(batch_module, "record_rows_in_session", _skip_event)  # noqa: B010
setattr(single_module, "prepare_event_rows", _skip_events)  # noqa: B010
setattr(single_module, "event_values", _no_event)  # noqa: B010

app = create_app()
