"""What one request contributes to its audit event, gathered while it is handled.

The request middleware creates one :class:`RequestAudit` per request; the auth
dependency fills the actor, routes name the action and target, services add
details. Whoever writes the event marks it, so a request leaves exactly one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestAudit:
    request_id: str
    ip: str | None
    method: str
    path: str
    actor_client_id: str | None = None
    actor_name: str | None = None
    actor_kind: str = "anonymous"
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    uscc: str | None = None
    purpose: str | None = None
    outcome: str | None = None
    details: dict[str, object] = field(default_factory=dict)
    # The event id written inside the request's own transaction, once committed.
    recorded_event_id: str | None = None
    pending_event_id: str | None = None

    @property
    def recorded(self) -> bool:
        return self.recorded_event_id is not None

    def set_actor(self, client_id: str, name: str, kind: str) -> None:
        self.actor_client_id, self.actor_name, self.actor_kind = client_id, name, kind


def outcome_for_status(status: int) -> str:
    """``success`` below 400, ``denied`` for refusals of access or rate, else ``error``."""
    if status < 400:
        return "success"
    if status in (401, 403, 429):
        return "denied"
    return "error"
