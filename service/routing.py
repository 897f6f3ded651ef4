"""The app's effective route table: FastAPI nests included routers; this flattens them once.

Read by the 405 handler (every method a path answers) and by the tests that hold every
``/v1`` route to a declared scope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

from service.state import state_singleton


@dataclass(frozen=True, slots=True)
class RouteEntry:
    path: str
    methods: frozenset[str]
    pattern: re.Pattern[str]
    dependant: Any
    """FastAPI's ``route.dependant`` (None for Starlette's own routes, e.g. ``/docs``)."""


def route_table(app: FastAPI) -> list[RouteEntry]:
    """Every route with a path and methods, built on first use (routes are fixed by then)."""

    def build() -> list[RouteEntry]:
        return [
            RouteEntry(
                path=context.path,
                methods=frozenset(context.methods),
                pattern=compile_path(context.path)[0],
                dependant=getattr(context, "dependant", None),
            )
            for context in iter_route_contexts(app.routes)
            if context.path and context.methods
        ]

    return state_singleton(app.state, "route_table", build)
