"""Render the served OpenAPI document deterministically (no database needed)."""

from __future__ import annotations

import json

from service.settings import Settings


def render_openapi() -> str:
    """The document of an app with default public settings, as stable, sorted JSON."""
    from service.app import create_app

    app = create_app(Settings(database_url="sqlite://", master_key="x" * 43, redis_url=None))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
