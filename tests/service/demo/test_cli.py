"""``creditshare demo seed`` and ``creditshare demo client``."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from schemas.uscc import uscc_problem_reason
from service.cli import app
from service.db.engine import make_engine
from service.demo.generator import demo_registry
from service.models import CreditRecord, Merchant
from service.settings import Settings
from tests.fixtures.cli import cli


def registry(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The registry's content, without ids, timestamps or ciphertexts (random by design)."""
    engine: Engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            merchants = conn.execute(
                select(
                    Merchant.uscc,
                    Merchant.name,
                    Merchant.entity_type,
                    Merchant.registration_status,
                    Merchant.registered_on,
                    Merchant.legal_representative_masked,
                    Merchant.address,
                    Merchant.legacy_code,
                ).order_by(Merchant.uscc)
            ).all()
            records = conn.execute(
                select(
                    CreditRecord.source,
                    CreditRecord.source_record_id,
                    CreditRecord.uscc,
                    CreditRecord.category,
                    CreditRecord.severity,
                    CreditRecord.status,
                    CreditRecord.document_no,
                    CreditRecord.decided_on,
                    CreditRecord.publicity_until,
                    CreditRecord.version,
                ).order_by(CreditRecord.source, CreditRecord.source_record_id)
            ).all()
    finally:
        engine.dispose()
    return [tuple(m) for m in merchants], [tuple(r) for r in records]


def expected_counts(n: int, seed: int | None = None) -> tuple[int, int]:
    lines = list(demo_registry(n) if seed is None else demo_registry(n, seed))
    merchants = sum(1 for line in lines if line["kind"] == "merchant")
    return merchants, len(lines) - merchants


def test_seed_is_idempotent_and_deterministic(
    tmp_path: Path, scratch_database: Callable[..., str]
) -> None:
    first_url = scratch_database("demo_a")
    runner = cli(first_url, tmp_path / "data")
    result = runner.invoke(app, ["demo", "seed", "--merchants", "60"])
    assert result.exit_code == 0, result.output
    merchants, records = registry(first_url)
    assert (len(merchants), len(records)) == expected_counts(60)
    assert len(merchants) == 60  # the published examples among them
    assert {"91440300708461136T", "914403001922038216"} <= {m[0] for m in merchants}
    assert all(uscc_problem_reason(m[0]) is None for m in merchants)  # valid USCCs only
    assert not any(m[7] for m in merchants)  # so none is flagged as a legacy code

    again = runner.invoke(app, ["demo", "seed", "--merchants", "60"])
    assert again.exit_code == 0, again.output
    assert registry(first_url) == (merchants, records)
    assert all(r[-1] == 1 for r in records)  # nothing was updated either

    # The same seed on another database gives the same registry.
    second_url = scratch_database("demo_b")
    assert (
        cli(second_url, tmp_path / "data")
        .invoke(app, ["demo", "seed", "--merchants", "60"])
        .exit_code
        == 0
    )
    assert registry(second_url) == (merchants, records)


def test_larger_run_adds_only_the_new_merchants(
    tmp_path: Path, scratch_database: Callable[..., str]
) -> None:
    url = scratch_database("demo_grow")
    runner = cli(url, tmp_path / "data")
    assert runner.invoke(app, ["demo", "seed", "--merchants", "20", "--seed", "7"]).exit_code == 0
    before_merchants, before_records = registry(url)
    grown = runner.invoke(app, ["demo", "seed", "--merchants", "35", "--seed", "7"])
    assert grown.exit_code == 0, grown.output
    merchants, records = registry(url)
    assert (len(merchants), len(records)) == expected_counts(35, 7)
    assert set(before_merchants) <= set(merchants)
    assert set(before_records) <= set(records)


def test_if_empty_skips_a_populated_registry(
    tmp_path: Path, scratch_database: Callable[..., str]
) -> None:
    url = scratch_database("demo_if_empty")
    runner = cli(url, tmp_path / "data")
    first = runner.invoke(app, ["demo", "seed", "--merchants", "10", "--if-empty"])
    assert first.exit_code == 0, first.output
    snapshot = registry(url)
    assert len(snapshot[0]) == expected_counts(10)[0]
    skipped = runner.invoke(app, ["demo", "seed", "--merchants", "40", "--if-empty"])
    assert skipped.exit_code == 0
    assert "nothing to do" in skipped.stderr
    assert registry(url) == snapshot


def _token(client: TestClient, client_id: str, secret: str) -> Any:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )


def test_demo_client_prints_working_credentials(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    runner = cli(settings.effective_database_url, tmp_path / "data", "http://testserver")
    first = runner.invoke(app, ["demo", "client", "--json"])
    assert first.exit_code == 0, first.output
    creds = json.loads(first.stdout)
    assert creds["token_endpoint"] == "http://testserver/oauth/token"
    token = _token(client, creds["client_id"], creds["client_secret"])
    assert token.status_code == 200, token.text
    assert set(token.json()["scope"].split()) == {"credit:check", "credit:detail"}

    # Run again: the same client, a new secret; the old one no longer works.
    second = runner.invoke(app, ["demo", "client"])
    assert second.exit_code == 0, second.output
    out = second.stdout
    assert f"client_id:     {creds['client_id']}" in out
    new_secret = next(
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.startswith("client_secret:")
    )
    assert new_secret != creds["client_secret"]
    assert "CREDITSHARE_PUBLIC_URL=http://testserver" in out
    assert '"$CREDITSHARE_PUBLIC_URL/oauth/token"' in out
    assert "-d grant_type=client_credentials" in out
    assert '"$CREDITSHARE_PUBLIC_URL/v1/credit-checks"' in out
    assert '{"uscc":"91440300708461136T","purpose":"ONBOARDING"}' in out
    assert _token(client, creds["client_id"], creds["client_secret"]).status_code == 401
    assert _token(client, creds["client_id"], new_secret).status_code == 200


@pytest.mark.parametrize("argv", [["demo", "seed", "--merchants", "-1"]])
def test_bad_arguments(argv: list[str], tmp_path: Path) -> None:
    result = cli("sqlite:///" + str(tmp_path / "unused.db"), tmp_path).invoke(app, argv)
    assert result.exit_code == 2
    assert not (tmp_path / "unused.db").exists()
