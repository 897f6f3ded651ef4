"""Several processes at once on PostgreSQL: writers and racing sequencers leave a gapless log
with each event exactly once, and a sequencer killed mid-batch leaves nothing half-done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.queries import verify_database
from audit.sealer import log_origin
from tests.audit.support import (
    add_events,
    event_count,
    fresh_database,
    log_state,
    standalone_parts,
    wait_until,
)
from tests.fixtures.databases import using_postgres

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(not using_postgres(), reason="multi-process tests need PostgreSQL"),
]
ROOT = Path(__file__).resolve().parents[2]


class Procs:
    def __init__(self, url: str, data: Path) -> None:
        self.url, self.data = url, data
        self.running: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.audit.procs",
                args[0],
                self.url,
                str(self.data),
                *args[1:],
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.running.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], timeout: float = 120) -> str:
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        return out

    def cleanup(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    with fresh_database(tmp_path, "procs") as url:
        data = tmp_path / "data"
        engine, _factory, _store = standalone_parts(url, data)  # the audit key, made once
        engine.dispose()
        runner = Procs(url, data)
        try:
            yield runner
        finally:
            runner.cleanup()


def _verified(url: str, data: Path) -> None:
    engine, factory, store = standalone_parts(url, data)
    with factory() as session:
        result = verify_database(session, store, log_origin("http://testserver"))
    engine.dispose()
    assert result.ok, result


def test_parallel_writers_and_racing_sequencers(procs: Procs, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    sealers = [
        procs.start("seal", "--stop-file", str(stop), "--batch", str(batch))
        for batch in (5, 17, 64)
    ]
    writers = [procs.start("write", "150", f"writer-{i}") for i in range(4)]
    for writer in writers:
        assert procs.finish(writer).strip() == "done"
    _engine, factory, _store = standalone_parts(procs.url, procs.data)
    total = event_count(factory)
    assert total == 600
    wait_until(lambda: len(log_state(factory)[0]) == total, 60, "every event sealed")
    stop.touch()
    counts = [int(procs.finish(s).split()[-1]) for s in sealers]
    assert sum(counts) == total  # each event sealed by exactly one of them
    assert sum(1 for c in counts if c) >= 2  # they did race
    seqs, pks = log_state(factory)
    assert seqs == list(range(1, total + 1))
    assert len(set(pks)) == total
    _engine.dispose()
    _verified(procs.url, procs.data)


def test_a_sequencer_killed_mid_batch_resumes_without_gaps_or_duplicates(
    procs: Procs, tmp_path: Path
) -> None:
    engine, factory, _store = standalone_parts(procs.url, procs.data)
    add_events(factory, 100)
    stop = tmp_path / "stop"
    doomed = procs.start(
        "seal", "--stop-file", str(stop), "--batch", "30", "--lease", "2", "--holder", "doomed",
        "--pause-in-batch",
    )  # fmt: skip
    assert doomed.stdout is not None
    assert doomed.stdout.readline().split() == ["IN_BATCH", "1", "30"]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=10)
    assert log_state(factory) == ([], [])  # its batch was never committed
    add_events(factory, 20)
    successor = procs.start("seal", "--stop-file", str(stop), "--batch", "30", "--lease", "2")
    # It takes over once the dead holder's lease expires (2 s), then seals everything.
    wait_until(lambda: len(log_state(factory)[0]) == 120, 30, "the successor to seal")
    stop.touch()
    assert procs.finish(successor).split() == ["sealed", "120"]
    seqs, pks = log_state(factory)
    assert seqs == list(range(1, 121))
    assert len(set(pks)) == 120
    engine.dispose()
    _verified(procs.url, procs.data)
