"""A Redis outage degrades as documented: limits fall back to the node, nothing 5xx's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import make_settings
from tests.fixtures.factories import Factory
from tests.fixtures.processes import redis_process


def test_token_endpoint_and_readiness_survive_redis_outage(
    settings: Settings, factory: Factory, tmp_path: Path
) -> None:
    creds = factory.client("admin:clients")
    with redis_process(tmp_path) as redis_server:
        app = create_app(make_settings(settings.effective_database_url, redis_server.url, tmp_path))
        with TestClient(app, raise_server_exceptions=False) as http:
            grant = {"grant_type": "client_credentials"}
            assert http.post("/oauth/token", data=grant, headers=creds.basic()).status_code == 200
            assert http.get("/readyz").json()["checks"]["redis"]["ok"] is True

            redis_server.stop()

            statuses = [
                http.post("/oauth/token", data=grant, headers=creds.basic()).status_code
                for _ in range(5)
            ]
            assert statuses == [200] * 5
            token = http.post("/oauth/token", data=grant, headers=creds.basic()).json()[
                "access_token"
            ]
            assert (
                http.get(
                    "/v1/admin/clients?limit=1", headers={"Authorization": f"Bearer {token}"}
                ).status_code
                == 200
            )
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["redis"]["ok"] is False
            metrics = http.get("/metrics").text
            fallback_lines = [
                line
                for line in metrics.splitlines()
                if line.startswith("creditshare_ratelimit_fallbacks_total")
            ]
            assert fallback_lines
            assert float(fallback_lines[0].split()[-1]) >= 1

            redis_server.start()
            ready_again = http.get("/readyz")
            assert ready_again.status_code == 200


def test_checks_under_load_survive_redis_stopping(
    settings: Settings, factory: Factory, tmp_path: Path
) -> None:
    """Redis is killed while checks are being made: every request still gets a clean answer
    (201 from the per-node fallback), none a 5xx."""
    uscc = factory.merchant()
    with redis_process(tmp_path) as redis_server:
        app = create_app(make_settings(settings.effective_database_url, redis_server.url, tmp_path))
        with TestClient(app, raise_server_exceptions=False) as http:
            headers = Factory(http).headers("credit:check", rate_plan="bulk")
            statuses: list[int] = []
            stop = threading.Event()

            def hammer() -> None:
                while not stop.is_set():
                    response = http.post(
                        "/v1/credit-checks",
                        json={"uscc": uscc, "purpose": "ONBOARDING"},
                        headers=headers,
                    )
                    statuses.append(response.status_code)

            def wait_for(count: int, when: str) -> None:
                deadline = time.monotonic() + 30
                while len(statuses) < count:
                    assert time.monotonic() < deadline, (
                        f"only {len(statuses)} of {count} answers {when} within 30 s: "
                        f"{sorted(set(statuses))}"
                    )
                    time.sleep(0.01)

            workers = [threading.Thread(target=hammer) for _ in range(4)]
            for worker in workers:
                worker.start()
            try:
                wait_for(20, "before Redis stopped")
                redis_server.stop()
                wait_for(len(statuses) + 40, "after Redis stopped")
            finally:
                stop.set()
                for worker in workers:
                    worker.join()
            assert all(status < 500 for status in statuses), sorted(set(statuses))
            assert statuses[-10:] == [201] * 10
