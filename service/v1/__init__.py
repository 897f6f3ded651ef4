"""The ``/v1`` routers, collected in one place for the app factory."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from audit.router import router as audit
    from service.clients.router import router as clients
    from service.credit_checks.router import router as credit_checks
    from service.imports.router import router as imports
    from service.merchants.router import router as merchants
    from service.policy.router import router as policy
    from service.usage.router import router as usage

    return [credit_checks, usage, clients, merchants, imports, policy, audit]
