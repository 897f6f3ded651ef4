"""Per-app singletons kept on ``app.state``, created once on first use (thread-safe)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_lock = threading.RLock()  # a builder may ask for another singleton


def state_singleton(state: Any, attribute: str, build: Callable[[], T]) -> T:
    """``state.<attribute>``, built by ``build`` the first time it is asked for."""
    value: T | None = getattr(state, attribute, None)
    if value is None:
        with _lock:
            value = getattr(state, attribute, None)
            if value is None:
                value = build()
                setattr(state, attribute, value)
    return value
