"""The SQLite write gate: one writer at a time across threads and processes, a no-op
where the database has no single writer to wait for."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from service.db.write_gate import write_gate

WAIT = 5.0
"""Upper bound for a thread handshake; a healthy run never comes near it."""

# Takes the lock file's flock without waiting: exit 0 if it got it, 3 if it is held.
_TRY_FLOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
fcntl.flock(fd, fcntl.LOCK_UN)
sys.exit(0)
"""


# Holds the gate of a file database (the production code) until told on stdin.
_HOLD_GATE = """
import sys
from sqlalchemy import create_engine
from service.db.write_gate import write_gate
gate = write_gate(create_engine(sys.argv[1]))
with gate.hold():
    print("held", flush=True)
    sys.stdin.readline()
"""
ROOT = Path(__file__).resolve().parents[2]


def _try_flock(lock_file: Path) -> int:
    """The exit status of another process trying to take the gate's flock."""
    done = subprocess.run(
        [sys.executable, "-c", _TRY_FLOCK, str(lock_file)], timeout=30, check=False
    )
    return done.returncode


def _overlapping_holders(hold: Callable[[], AbstractContextManager[None]]) -> list[str]:
    """Two threads through ``hold``, the second started while the first is inside."""
    events: list[str] = []
    first_inside = threading.Event()
    second_trying = threading.Event()
    go_on = threading.Event()

    def first() -> None:
        with hold():
            events.append("first-in")
            first_inside.set()
            go_on.wait(WAIT)
            events.append("first-out")

    def second() -> None:
        second_trying.set()
        with hold():
            events.append("second-in")

    one, two = threading.Thread(target=first), threading.Thread(target=second)
    one.start()
    assert first_inside.wait(WAIT)
    two.start()
    assert second_trying.wait(WAIT)
    two.join(0.05)  # room for the second thread to get in, were the gate not shut
    go_on.set()
    one.join(WAIT)
    two.join(WAIT)
    return events


def test_disabled_for_in_memory_sqlite() -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine(url)
        gate = write_gate(engine)
        assert not gate.enabled
        with gate.hold(), gate.hold():  # a no-op: nothing to deadlock on
            pass
        engine.dispose()


def test_disabled_for_postgres() -> None:
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/nothing")  # never connects
    gate = write_gate(engine)
    assert not gate.enabled
    with gate.hold():
        pass


def test_enabled_for_a_file_database_with_the_lock_file_beside_it(tmp_path: Path) -> None:
    database = tmp_path / "gate.db"
    engine = create_engine(f"sqlite:///{database.as_posix()}")
    gate = write_gate(engine)
    assert gate.enabled
    assert write_gate(engine) is gate  # one gate per engine
    assert write_gate(create_engine(f"sqlite:///{database.as_posix()}")) is not gate
    with gate.hold():
        assert (tmp_path / "gate.db-writegate").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gate.db-writegate"]
    engine.dispose()


def test_two_threads_holding_the_gate_never_overlap(tmp_path: Path) -> None:
    gate = write_gate(create_engine(f"sqlite:///{(tmp_path / 'threads.db').as_posix()}"))
    assert _overlapping_holders(gate.hold) == ["first-in", "first-out", "second-in"]


def test_many_threads_take_turns(tmp_path: Path) -> None:
    gate = write_gate(create_engine(f"sqlite:///{(tmp_path / 'turns.db').as_posix()}"))
    events: list[tuple[str, int]] = []
    inside = 0
    most_inside = 0
    counter = threading.Lock()

    def work(n: int) -> None:
        nonlocal inside, most_inside
        for _ in range(20):
            with gate.hold():
                with counter:
                    inside += 1
                    most_inside = max(most_inside, inside)
                events.append(("in", n))
                events.append(("out", n))
                with counter:
                    inside -= 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert most_inside == 1
    assert len(events) == 6 * 20 * 2
    # Every entry is followed by the same thread's exit: no one came in meanwhile.
    for enter, leave in zip(events[::2], events[1::2], strict=True):
        assert (enter[0], leave[0], enter[1]) == ("in", "out", leave[1])


def test_another_process_cannot_take_the_lock_while_the_gate_is_held(tmp_path: Path) -> None:
    database = tmp_path / "shared.db"
    gate = write_gate(create_engine(f"sqlite:///{database.as_posix()}"))
    lock_file = tmp_path / "shared.db-writegate"
    with gate.hold():
        assert _try_flock(lock_file) == 3  # BlockingIOError in the other process
    assert _try_flock(lock_file) == 0
    with gate.hold():  # and the gate can be taken again
        assert _try_flock(lock_file) == 3
    assert _try_flock(lock_file) == 0


def test_this_process_waits_while_another_process_holds_the_gate(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'other.db').as_posix()}"
    lock_file = tmp_path / "other.db-writegate"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_GATE, url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lock_file.exists()
        assert _try_flock(lock_file) == 3
        gate = write_gate(create_engine(url))
        entered = threading.Event()

        def take() -> None:
            with gate.hold():
                entered.set()

        waiter = threading.Thread(target=take)
        waiter.start()
        assert not entered.wait(0.05)  # room to get in, were the other process not holding
        holder.stdin.write("release\n")
        holder.stdin.flush()
        assert holder.wait(30) == 0
        waiter.join(WAIT)
        assert entered.is_set()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdin.close()
        holder.stdout.close()
    assert _try_flock(lock_file) == 0


def test_the_gate_is_released_when_the_transaction_raises(tmp_path: Path) -> None:
    database = tmp_path / "raises.db"
    gate = write_gate(create_engine(f"sqlite:///{database.as_posix()}"))
    try:
        with gate.hold():
            raise ValueError("rolled back")
    except ValueError:
        pass
    assert _try_flock(tmp_path / "raises.db-writegate") == 0
    done = threading.Event()

    def again() -> None:
        with gate.hold():
            done.set()

    thread = threading.Thread(target=again)
    thread.start()
    thread.join(WAIT)
    assert done.is_set()


def test_without_a_usable_lock_file_threads_are_still_serialised(tmp_path: Path) -> None:
    (tmp_path / "ro.db-writegate").mkdir()  # cannot be opened as the lock file
    gate = write_gate(create_engine(f"sqlite:///{(tmp_path / 'ro.db').as_posix()}"))
    with gate.hold():  # the first write finds the lock file unusable
        pass
    assert _overlapping_holders(gate.hold) == ["first-in", "first-out", "second-in"]


def _open_lock_files(lock_path: Path) -> int:
    """How many descriptors of this process point at ``lock_path``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(lock_path))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_the_lock_file_is_closed_with_its_engine(tmp_path: Path) -> None:
    """Apps (and their engines) come and go in one process: a gate's descriptor goes too."""
    database = tmp_path / "gone.db"
    engine = create_engine(f"sqlite:///{database}")
    with write_gate(engine).hold():
        pass
    lock_path = Path(f"{database}-writegate").resolve()
    assert _open_lock_files(lock_path) == 1
    engine.dispose()
    del engine
    gc.collect()
    assert _open_lock_files(lock_path) == 0


# ---- taking the gate without a context manager (the event loop's writes) --------------------


def test_try_acquire_takes_a_free_gate_and_not_a_held_one(tmp_path: Path) -> None:
    gate = write_gate(create_engine(f"sqlite:///{(tmp_path / 'try.db').as_posix()}"))
    assert gate.try_acquire()
    assert _try_flock(tmp_path / "try.db-writegate") == 3  # held for other processes too
    taken: list[bool] = []
    other = threading.Thread(target=lambda: taken.append(gate.try_acquire()))
    other.start()
    other.join(WAIT)
    assert taken == [False]  # and for other threads, without waiting
    gate.release()
    assert _try_flock(tmp_path / "try.db-writegate") == 0
    assert gate.try_acquire()
    gate.release()


def test_try_acquire_fails_while_another_process_holds_the_gate(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'other.db').as_posix()}"
    gate = write_gate(create_engine(url))
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_GATE, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    ) as holder:
        assert holder.stdin is not None
        assert holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "held"
            assert not gate.try_acquire()
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            holder.wait(30)
    assert gate.try_acquire()
    gate.release()


def test_acquired_on_one_thread_released_on_another(tmp_path: Path) -> None:
    """The loop waits for the gate on the writer thread and releases it itself."""
    gate = write_gate(create_engine(f"sqlite:///{(tmp_path / 'handoff.db').as_posix()}"))
    worker = threading.Thread(target=gate.acquire)
    worker.start()
    worker.join(WAIT)
    assert not gate.try_acquire()
    gate.release()
    assert gate.try_acquire()
    gate.release()


def test_acquire_and_release_are_no_ops_when_disabled() -> None:
    gate = write_gate(create_engine("sqlite://"))
    assert gate.try_acquire()
    assert gate.try_acquire()  # nothing to wait for
    gate.acquire()
    gate.release()
