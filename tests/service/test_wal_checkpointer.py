"""The WAL checkpointer: it copies the log outside the write gate, completes it under the
gate once it is long enough (the next writer then starts the log over: steady writing
does not grow it), tries again later when a reader kept it from completing, and is made
only for a SQLite file."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import StaticPool

from service.db.engine import WAL_BACKSTOP_PAGES, make_engine
from service.db.wal_checkpointer import WalCheckpointer, for_engine
from service.db.write_gate import write_gate

ROW = b"x" * 3000
"""Most of a 4 KiB page: each row written is about one frame of the log."""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'wal.db'}", pool_size=1)
    with made.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)"))
    yield made
    made.dispose()


def _write(engine: Engine, rows: int) -> None:
    with engine.begin() as connection:
        for _ in range(rows):
            connection.execute(text("INSERT INTO t (blob) VALUES (:b)"), {"b": ROW})


def _wal_bytes(engine: Engine) -> int:
    return os.stat(f"{engine.url.database}-wal").st_size


def test_the_engine_leaves_checkpoints_to_the_checkpointer(engine: Engine) -> None:
    with engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert pages == WAL_BACKSTOP_PAGES


def test_a_log_long_enough_is_completed_and_started_over(engine: Engine) -> None:
    checkpointer = WalCheckpointer(str(engine.url.database), write_gate(engine), restart_frames=100)
    connection = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
    try:
        _write(engine, 20)
        checkpointer.checkpoint_once(connection)  # short: copied, not completed
        assert checkpointer.completed == 0
        _write(engine, 200)
        checkpointer.checkpoint_once(connection)
        assert checkpointer.completed == 1
        size = _wal_bytes(engine)
        for _ in range(5):  # the same again, five times: the log starts over each time
            _write(engine, 200)
            checkpointer.checkpoint_once(connection)
        assert checkpointer.completed == 6
        # Started over each time: about one round's frames (the table's index grows a
        # little); appended instead, it would be six rounds' worth.
        assert _wal_bytes(engine) < 2 * size
    finally:
        connection.close()
    with engine.connect() as reading:  # nothing lost on the way
        assert reading.execute(text("SELECT count(*) FROM t")).scalar() == 1220


def test_a_reader_in_the_log_delays_its_completion_to_a_later_turn(engine: Engine) -> None:
    checkpointer = WalCheckpointer(str(engine.url.database), write_gate(engine), restart_frames=1)
    _write(engine, 50)
    ours = sqlite3.connect(str(engine.url.database), timeout=0, isolation_level=None)
    other = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        # A reader in the middle of the log keeps a checkpoint from copying past it.
        other.execute("BEGIN")
        other.execute("SELECT count(*) FROM t").fetchone()
        _write(engine, 50)
        checkpointer.checkpoint_once(ours)
        assert checkpointer.completed == 0
        other.execute("COMMIT")
        checkpointer.checkpoint_once(ours)
        assert checkpointer.completed == 1
    finally:
        ours.close()
        other.close()


def test_the_thread_checkpoints_until_stopped(engine: Engine) -> None:
    checkpointer = WalCheckpointer(
        str(engine.url.database), write_gate(engine), interval=0.01, restart_frames=10
    )
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while checkpointer.completed == 0:
            assert time.monotonic() < deadline, "no checkpoint within 10 s"
            _write(engine, 20)
            time.sleep(0.02)
    finally:
        checkpointer.stop()
    done = checkpointer.completed
    _write(engine, 50)
    time.sleep(0.05)
    assert checkpointer.completed == done  # stopped: nothing more
    checkpointer.stop()  # twice: harmless


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:shared?mode=memory&uri=true"]
)
def test_no_checkpointer_without_a_database_file(url: str) -> None:
    memory = create_engine(url, poolclass=StaticPool)
    try:
        assert for_engine(memory) is None
    finally:
        memory.dispose()


def test_no_checkpointer_for_postgresql() -> None:
    server = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert for_engine(server) is None


def test_a_checkpointer_for_a_sqlite_file(engine: Engine) -> None:
    assert isinstance(for_engine(engine), WalCheckpointer)
