"""``creditshare serve``: several worker processes without Redis are served, with a warning
that each process keeps its own rate-limit counters (CONTRACT.md: unset, "for one process")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.cli import app
from service.settings import Settings
from tests.fixtures.cli import cli


@pytest.mark.parametrize(("workers", "warned"), [(1, False), (2, True)])
def test_several_workers_without_redis_are_warned_about(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    warned: bool,
) -> None:
    monkeypatch.delenv("CREDITSHARE_REDIS_URL", raising=False)
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **options: served.append(options))
    runner = cli(settings.effective_database_url, tmp_path / "data")
    result = runner.invoke(app, ["serve", "--port", "8123", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    (options,) = served
    assert options["workers"] == workers
    assert ("without CREDITSHARE_REDIS_URL" in result.stderr) == warned
