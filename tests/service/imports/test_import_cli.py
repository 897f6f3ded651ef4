"""``creditshare import FILE``: exit codes, summary, per-line errors, audit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from service.cli import app
from service.db.engine import make_engine
from service.demo.generator import generate
from service.models import AuditEvent, CreditRecord, Merchant
from tests.conftest import MASTER_KEY
from tests.fixtures.factories import random_uscc
from tests.service.imports.lines_helpers import merchant_line, ndjson, record_line


@pytest.fixture
def database(scratch_database: Callable[..., str]) -> Iterator[tuple[str, Engine]]:
    url = scratch_database("import_cli")
    engine = make_engine(url, pool_size=1)
    yield url, engine
    engine.dispose()


@pytest.fixture
def runner(database: tuple[str, Engine], tmp_path: Path) -> CliRunner:
    return CliRunner(
        env={
            "CREDITSHARE_DATABASE_URL": database[0],
            "CREDITSHARE_MASTER_KEY": MASTER_KEY,
            "CREDITSHARE_DATA_DIR": str(tmp_path / "data"),
            "CREDITSHARE_ENV": "dev",
        }
    )


def count(engine: Engine, model: type[Merchant] | type[CreditRecord]) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def test_all_good_exits_0_then_unchanged(
    runner: CliRunner, database: tuple[str, Engine], tmp_path: Path
) -> None:
    _, engine = database
    a, b = random_uscc(), random_uscc("92")
    file = tmp_path / "good.ndjson"
    file.write_bytes(
        ndjson(
            merchant_line(a),
            merchant_line(b, entity_type="INDIVIDUAL_BUSINESS"),
            record_line(a),
            record_line(b),
        )
    )
    result = runner.invoke(app, ["import", str(file)])
    assert result.exit_code == 0, result.output
    assert "accepted" in result.stdout
    assert "4 lines read" in result.stdout
    assert count(engine, Merchant) == 2
    assert count(engine, CreditRecord) == 2

    again = runner.invoke(app, ["import", str(file)])
    assert again.exit_code == 0
    total = [line for line in again.stdout.splitlines() if "total" in line]
    assert total
    assert [cell.strip() for cell in total[0].split("│")[1:6]] == ["total", "0", "0", "4", "0"]
    assert count(engine, CreditRecord) == 2

    with engine.connect() as conn:
        events = conn.execute(
            select(AuditEvent.action, AuditEvent.actor_kind, AuditEvent.details).where(
                AuditEvent.action == "import.run"
            )
        ).all()
    assert len(events) == 2
    assert {e.actor_kind for e in events} == {"operator"}
    assert events[0].details["accepted"] == 4


def test_rejected_lines_exit_1_with_line_errors(
    runner: CliRunner, database: tuple[str, Engine], tmp_path: Path
) -> None:
    _, engine = database
    code = random_uscc()
    marker = "ECHO-CHECK-91"
    file = tmp_path / "mixed.ndjson"
    file.write_bytes(
        ndjson(
            merchant_line(code),
            merchant_line(random_uscc(), entity_type=marker),
            "{broken " + marker,
            record_line(code),
        )
    )
    result = runner.invoke(app, ["import", str(file)])
    assert result.exit_code == 1, result.output
    assert "line 2: entity_type:" in result.stderr
    assert "line 3: line: Not valid JSON" in result.stderr
    assert marker not in result.output
    assert count(engine, Merchant) == 1
    assert count(engine, CreditRecord) == 1


def test_error_listing_is_capped(runner: CliRunner, tmp_path: Path) -> None:
    file = tmp_path / "bad.ndjson"
    file.write_bytes(b"nope\n" * 30)
    result = runner.invoke(app, ["import", str(file), "--show-errors", "5"])
    assert result.exit_code == 1
    assert result.stderr.count("Not valid JSON") == 5
    assert "... and 25 more rejected line(s)" in result.stderr


def test_dry_run_writes_nothing(
    runner: CliRunner, database: tuple[str, Engine], tmp_path: Path
) -> None:
    _, engine = database
    file = tmp_path / "dry.ndjson"
    code = random_uscc()
    file.write_bytes(ndjson(record_line(code), merchant_line(code)))
    result = runner.invoke(app, ["import", str(file), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout
    assert count(engine, Merchant) == 0
    assert count(engine, CreditRecord) == 0


def test_unusable_input_exits_2(runner: CliRunner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["import", str(tmp_path / "absent.ndjson")])
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    directory = runner.invoke(app, ["import", str(tmp_path)])
    assert directory.exit_code == 2


def test_unmigrated_database_exits_2(tmp_path: Path, scratch_database: Callable[..., str]) -> None:
    url = scratch_database("import_cli_empty", migrate=False)
    file = tmp_path / "x.ndjson"
    file.write_bytes(ndjson(merchant_line(random_uscc())))
    runner = CliRunner(
        env={
            "CREDITSHARE_DATABASE_URL": url,
            "CREDITSHARE_MASTER_KEY": MASTER_KEY,
            "CREDITSHARE_DATA_DIR": str(tmp_path / "data"),
        }
    )
    result = runner.invoke(app, ["import", str(file)])
    assert result.exit_code == 2
    assert "db upgrade" in result.stderr


def test_sigterm_stops_between_batches_and_a_second_import_completes(
    database: tuple[str, Engine], tmp_path: Path
) -> None:
    """Stopped mid-way (SIGTERM, as Ctrl-C), an import stops between batches (the one being
    filled is dropped), says what it stored, exits 130 and leaves an event; the same import
    again completes it."""
    url, engine = database
    lines = [line for line in generate(40_000) if line["kind"] == "merchant"]
    file = tmp_path / "big.ndjson"
    file.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    env = {
        **os.environ,
        "CREDITSHARE_DATABASE_URL": url,
        "CREDITSHARE_MASTER_KEY": MASTER_KEY,
        "CREDITSHARE_DATA_DIR": str(tmp_path / "data"),
        "CREDITSHARE_ENV": "dev",
    }
    # The first half on stdin; the import cannot end before stdin does, so the signal
    # always finds it running, with some batches committed.
    half = b"".join(orjson.dumps(line) + b"\n" for line in lines[: len(lines) // 2])
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "import", "-"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None
    assert process.stderr is not None
    try:
        process.stdin.write(half)
        process.stdin.flush()
        deadline = time.monotonic() + 60
        while count(engine, Merchant) == 0:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no batch was committed within 60 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        process.stdin.close()
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    stored = count(engine, Merchant)
    assert process.returncode == 130, stderr.decode()
    assert 0 < stored <= len(lines) // 2
    message = " ".join(stderr.decode().split())  # the console wraps long lines
    assert "interrupted after" in message
    assert "importing the same file again completes it" in message
    with engine.connect() as conn:
        event = conn.execute(
            select(AuditEvent.status, AuditEvent.details).where(AuditEvent.action == "import.run")
        ).one()
    assert event.status == 499
    assert event.details["interrupted"] is True
    # Stopped between batches: what it says it stored is what the database holds.
    assert event.details["accepted"] == stored
    assert f"{stored} accepted" in message

    command = [sys.executable, "-m", "service.cli", "import", str(file)]
    again = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr.decode()
    assert count(engine, Merchant) == len(lines)
