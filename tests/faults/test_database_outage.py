"""PostgreSQL stopped under a running API: clean 503s, /readyz red, recovery without a
restart; and a full SQLite disk refuses cleanly. Never a 500, never a half-written result."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from service.app import create_app
from service.db.engine import make_engine
from service.db.migrate import upgrade
from service.models import AuditEvent, CreditCheck
from tests.conftest import make_settings
from tests.fixtures.factories import Factory
from tests.fixtures.processes import postgres_cluster

CHECK = {"uscc": "", "purpose": "ONBOARDING"}


def _count(factory: Factory) -> tuple[int, int]:
    with factory.sessionmaker() as session:
        return (
            int(session.scalar(select(func.count()).select_from(CreditCheck)) or 0),
            int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0),
        )


@pytest.mark.skipif(
    shutil.which("runuser") is None or not Path("/usr/lib/postgresql").exists(),
    reason="needs a local PostgreSQL installation",
)
def test_postgres_stop_and_restart(tmp_path: Path) -> None:
    with postgres_cluster() as cluster:
        upgrade(cluster.url)
        app = create_app(make_settings(cluster.url, None, tmp_path / "data"))
        with TestClient(app, raise_server_exceptions=False) as http:
            factory = Factory(http)
            creds = factory.client("credit:check")
            headers = {"Authorization": f"Bearer {factory.token(creds)}"}
            body = {**CHECK, "uscc": factory.merchant()}
            assert http.post("/v1/credit-checks", json=body, headers=headers).status_code == 201
            before = _count(factory)

            cluster.stop()
            outage = [http.post("/v1/credit-checks", json=body, headers=headers) for _ in range(3)]
            for response in outage:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["type"].rsplit("/", 1)[-1] in {
                    "service-unavailable",
                    "audit-unavailable",
                }
                assert "verdict" not in response.text
            assert http.get("/readyz").status_code == 503
            token = http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, headers=creds.basic()
            )
            assert token.status_code == 503, token.text

            cluster.start()
            # Recovery without restarting the app: stale pooled connections may fail once more
            # (cleanly, 503) before the pool has reconnected.
            recovered = []
            for _ in range(20):
                recovered.append(
                    http.post("/v1/credit-checks", json=body, headers=headers).status_code
                )
                if recovered[-1] == 201:
                    break
            assert recovered[-1] == 201, recovered
            assert set(recovered) <= {201, 503}, recovered
            assert http.get("/readyz").status_code == 200
            after = _count(factory)
            assert (
                after[0] == before[0] + 1
            )  # nothing half-written during the outage or the retries
            assert after[1] >= before[1] + 1


def test_sqlite_disk_full_is_refused_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'full.db').as_posix()}"
    upgrade(url)
    app = create_app(make_settings(url, None, tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as http:
        factory = Factory(http)
        headers = factory.headers("credit:check")
        body = {**CHECK, "uscc": factory.merchant()}
        assert http.post("/v1/credit-checks", json=body, headers=headers).status_code == 201
        checks_before, _ = _count(factory)
        engine = make_engine(url, pool_size=1)
        with engine.connect() as connection:
            pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        engine.dispose()

        # Cap the file at its current size on every pooled connection: the next write
        # fails with SQLITE_FULL ("database or disk is full"), exactly as a full disk would.
        app.state.engine.dispose()
        from sqlalchemy import event

        def cap(dbapi_connection: object, _record: object) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

        event.listen(app.state.engine, "connect", cap)
        statuses = []
        for _ in range(200):
            statuses.append(http.post("/v1/credit-checks", json=body, headers=headers).status_code)
            if statuses[-1] == 503 and statuses.count(503) >= 3:
                break
        assert set(statuses) <= {201, 503}, statuses
        assert statuses.count(503) >= 3, statuses
        event.remove(app.state.engine, "connect", cap)
        app.state.engine.dispose()
        # Every 201 is stored; every refused request left nothing behind.
        assert _count(factory)[0] == checks_before + statuses.count(201)
        assert http.post("/v1/credit-checks", json=body, headers=headers).status_code == 201
