"""SIGTERM lets in-flight requests finish, then the process exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from service.settings import Settings
from tests.conftest import MASTER_KEY
from tests.fixtures.factories import Factory
from tests.fixtures.servers import free_port, server_env, wait_healthy


def test_in_flight_batch_completes_on_sigterm(
    settings: Settings, factory: Factory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    codes = [factory.merchant() for _ in range(50)]
    headers = factory.headers("credit:check credit:detail", rate_plan="bulk")
    port = free_port()
    env = server_env(
        settings.effective_database_url,
        settings.redis_url,
        tmp_path_factory.mktemp("graceful"),
        MASTER_KEY,
        public_url=settings.public_url,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, base)
        items = [{"uscc": codes[i % len(codes)]} for i in range(1000)]
        results: list[int] = []

        def batch() -> None:
            response = httpx.post(
                f"{base}/v1/credit-checks/batch",
                json={"purpose": "ONBOARDING", "items": items},
                headers=headers,
                timeout=60,
            )
            results.append(response.status_code)

        def used_today() -> int:
            response = httpx.get(f"{base}/v1/usage", headers=headers)
            assert response.status_code == 200, response.text
            return int(response.json()["used_today"])

        # The batch charges the client's quota before it checks and stores the items: once
        # /v1/usage shows the charge while the batch's request is still waiting, the server
        # is handling it. A batch takes about a tenth of a second; one that ended before it
        # was seen in flight (a loaded machine, a slow poll) is followed by another, the
        # server still up, until one is caught.
        for _attempt in range(10):
            results.clear()
            before = used_today()
            worker = threading.Thread(target=batch)
            worker.start()
            deadline = time.monotonic() + 30
            while worker.is_alive() and used_today() == before:
                assert time.monotonic() < deadline, "the batch was not seen in flight within 30 s"
                time.sleep(0.005)
            if worker.is_alive():
                process.send_signal(signal.SIGTERM)
                break
            worker.join()
            assert results == [200]
        else:
            pytest.fail("no batch was seen in flight in 10 attempts")
        worker.join(timeout=60)
        assert results == [200]
        # uvicorn finishes the in-flight work, then re-raises the signal it caught.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
