"""The ``/v1`` routers, collected in one place for the app factory."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from service.clients.router import router as clients

    return [clients]
