"""Single checks on SQLite, issued on the event loop (``single_service._LoopGroups``): a
writer that holds SQLite's lock without taking the write gate never stalls the loop (the
group tries again until it is gone, then commits); a group waiting for the gate held by
another thread does not stall the loop either; many groups contending with another
process's writers all commit (no deadlock between the gate's waiters and its holder); a
failed write leaves nothing behind and answers 503."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.credit_checks import single_service
from service.db.write_gate import WriteGate, write_gate
from service.models import CreditCheck
from tests.conftest import make_settings
from tests.fixtures.databases import using_postgres
from tests.fixtures.factories import Factory
from tests.service.credit_checks.support import platform

pytestmark = pytest.mark.skipif(using_postgres(), reason="SQLite's own writer path")

WAIT = 10.0
"""Upper bound for a handshake; a healthy run never comes near it."""


@pytest.fixture
def served(scratch_database: Any, tmp_path: Path) -> Any:
    url = scratch_database("sqlite-loop")
    app = create_app(make_settings(url, None, tmp_path / "d"))
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http, url


def _check_in_thread(
    http: TestClient, uscc: str, headers: dict[str, str]
) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    body = {"uscc": uscc, "purpose": "ONBOARDING"}
    thread = threading.Thread(
        target=lambda: answers.append(http.post("/v1/credit-checks", json=body, headers=headers))
    )
    thread.start()
    return thread, answers


def _gate_frees(gate: WriteGate) -> bool:
    """Whether the gate can be taken within ``WAIT`` (the sequencer and the checkpointer
    take it now and then, briefly); taken, it is given back at once."""
    deadline = time.monotonic() + WAIT
    while not gate.try_acquire():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    gate.release()
    return True


def _count_checks(http: TestClient) -> int:
    with http.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        return int(session.scalar(select(func.count()).select_from(CreditCheck)) or 0)


def test_a_writer_outside_the_gate_is_waited_for_without_stalling_the_loop(
    served: Any,
) -> None:
    http, url = served
    factory = Factory(http)
    headers = factory.headers("credit:check")
    uscc = factory.merchant()
    before = _count_checks(http)
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # SQLite's write lock, without the gate
        thread, answers = _check_in_thread(http, uscc, headers)
        # The loop still answers while the check waits for the lock.
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
        thread.join(0.2)
        assert thread.is_alive()  # the check cannot have been written
        assert not answers
        other.execute("COMMIT")
    finally:
        other.close()
    thread.join(WAIT)
    assert [a.status_code for a in answers] == [201]
    assert _count_checks(http) == before + 1


def test_a_group_waiting_for_the_gate_does_not_stall_the_loop(served: Any) -> None:
    http, _ = served
    factory = Factory(http)
    headers = factory.headers("credit:check")
    gate = write_gate(http.app.state.engine)  # type: ignore[attr-defined]
    uscc = factory.merchant()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.hold():
            holding.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(WAIT)
    thread, answers = _check_in_thread(http, uscc, headers)
    for _ in range(3):
        assert http.get("/healthz").status_code == 200
    thread.join(0.2)
    assert thread.is_alive()
    assert not answers
    release.set()
    holder.join(WAIT)
    thread.join(WAIT)
    assert [a.status_code for a in answers] == [201]
    assert _gate_frees(gate)  # the group gave it back


def test_a_failed_write_answers_503_stores_nothing_and_frees_the_gate(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, _ = served
    factory = Factory(http)
    headers = factory.headers("credit:check")
    before = _count_checks(http)

    def broken(connection: Any, group: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(single_service, "store_group", broken)
    body = {"uscc": factory.merchant(), "purpose": "ONBOARDING"}
    response = http.post("/v1/credit-checks", json=body, headers=headers)
    assert response.status_code in (500, 503)
    assert "disk" not in response.text
    monkeypatch.undo()
    assert _count_checks(http) == before
    assert _gate_frees(write_gate(http.app.state.engine))  # type: ignore[attr-defined]
    assert http.post("/v1/credit-checks", json=body, headers=headers).status_code == 201


def test_groups_contending_with_the_gate_and_outside_writers_all_commit(served: Any) -> None:
    """Checks in parallel while another thread keeps taking the gate (as the sequencer
    and the checkpointer do) and another connection keeps taking SQLite's lock without it
    (as an administrator's write does): every check commits, none waits forever."""
    http, url = served
    factory = Factory(http)
    headers = platform(factory)  # a plan no burst of the test exhausts
    codes = [factory.merchant() for _ in range(8)]
    before = _count_checks(http)
    gate = write_gate(http.app.state.engine)  # type: ignore[attr-defined]
    stop = threading.Event()

    def gate_holder() -> None:
        while not stop.is_set():
            with gate.hold():
                time.sleep(0.002)
            time.sleep(0.001)

    def outside_writer() -> None:
        other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=10)
        try:
            while not stop.is_set():
                other.execute("BEGIN IMMEDIATE")
                time.sleep(0.002)
                other.execute("COMMIT")
                time.sleep(0.001)
        finally:
            other.close()

    answers: list[int] = []
    lock = threading.Lock()

    def platform_client(n: int) -> None:
        for i in range(6):
            body = {"uscc": codes[(n + i) % len(codes)], "purpose": "ONBOARDING"}
            status = http.post("/v1/credit-checks", json=body, headers=headers).status_code
            with lock:
                answers.append(status)

    noise = [threading.Thread(target=gate_holder), threading.Thread(target=outside_writer)]
    clients = [threading.Thread(target=platform_client, args=(n,)) for n in range(8)]
    for thread in noise + clients:
        thread.start()
    try:
        for thread in clients:
            thread.join(60)
            assert not thread.is_alive(), "a check never answered"
    finally:
        stop.set()
        for thread in noise:
            thread.join(WAIT)
    assert answers == [201] * 48
    assert _count_checks(http) == before + 48
    assert _gate_frees(gate)
