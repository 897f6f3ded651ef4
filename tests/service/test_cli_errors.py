"""What an operator can fix ends ``creditshare`` with one line and exit status 2 (the setup
is unusable), never a traceback, and never 1, which means rejected lines or a failed
verification to the commands that use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MASTER_KEY

UNREACHABLE = "postgresql://nobody@127.0.0.1:1/nothing"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["audit", "verify"], ["keys", "rotate"]])
def test_an_unreachable_database_is_exit_2_with_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    env = {
        **os.environ,
        "CREDITSHARE_DATABASE_URL": UNREACHABLE,
        "CREDITSHARE_MASTER_KEY": MASTER_KEY,
        "CREDITSHARE_DATA_DIR": str(tmp_path),
        "CREDITSHARE_ENV": "dev",
    }
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "CREDITSHARE_DATABASE_URL" in line or "unreachable" in line
