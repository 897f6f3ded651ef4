"""Credit-check throughput under load, against a bare FastAPI endpoint in the same run.

Run manually (needs ``wrk``):

    .venv/bin/python -m bench.check_bench --db sqlite --merchants 10000
    .venv/bin/python -m bench.check_bench --db postgres --merchants 10000 \
        --pg postgresql://postgres@127.0.0.1:5432/postgres --redis redis://127.0.0.1:6379/15

It builds a fresh database (a SQLite file, or database ``cs_check_bench`` on the PostgreSQL
server), migrates it, seeds a registry with ``creditshare demo seed --merchants N``,
creates a platform client on a rate plan nobody can exhaust, starts the API with
uvicorn (2 workers) and the bare endpoint the same way, and drives them in turn with
``wrk -t2 -c64 -d10s`` (each run after a 3 s warm-up), posting checks for codes drawn
from the registry: ``--rounds`` alternations, both servers up, the ratio being the median
of the ratios of neighbouring runs (this machine's speed drifts over minutes). The audit
trail is sealed by the API processes' own sequencer thread, or with ``--sequencer worker``
by a ``creditshare worker`` beside them; the time sealing needed to catch up after the load
is reported. Then it times 1000-item batches, one at a time. Prints one JSON object with
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from audit import repository as audit_repository
from auth.registry import create_client
from schemas.clients import ClientCreate
from service.db.base import utcnow
from service.db.engine import make_engine
from service.db.session import make_sessionmaker
from service.models import RatePlanRow

ROOT = Path(__file__).resolve().parents[1]
MASTER_KEY = "bench-master-key-0123456789abcdefghijklmnopqrstuvwxyz"
PLAN = "bench-unlimited"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(target: str, env: dict[str, str], workers: int) -> Iterator[str]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning", "--no-server-header",
         "--no-access-log"],
        env={**os.environ, **env, "CREDITSHARE_PUBLIC_URL": base},
        cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{target} exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=0.5).status_code in (200, 404):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def sealing_worker(env: dict[str, str], wanted: bool) -> Iterator[None]:
    """``creditshare worker`` beside the API, as docs/operations.md deploys it on PostgreSQL
    (the API processes then run no sequencer thread); nothing when not ``wanted``."""
    if not wanted:
        yield
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        env={**os.environ, **env},
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def _database(kind: str, pg: str, tmp: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}"
    admin = make_url(pg).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'cs_check_bench'"
        )
        conn.execute("DROP DATABASE IF EXISTS cs_check_bench")
        conn.execute("CREATE DATABASE cs_check_bench")
    return admin.set(database="cs_check_bench").render_as_string(hide_password=False)


def _cli(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _analyze(url: str) -> None:
    """Planner statistics for the freshly seeded registry, as autovacuum would gather them
    on a production server (this machine's PostgreSQL runs with autovacuum off)."""
    engine = make_engine(url, pool_size=1)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    engine.dispose()


def _sealing_lag(url: str, timeout: float = 120.0) -> dict[str, float]:
    """Right after the load: how many events were not yet sealed, and how long the
    sequencer (thread or worker) took to seal them all (``audit.repository.backlog``,
    what ``/readyz`` asks)."""
    engine = make_engine(url, pool_size=1)
    started = time.monotonic()
    try:
        with make_sessionmaker(engine)() as session:
            backlog = first = audit_repository.backlog(session, 0)[0]
            while backlog and time.monotonic() - started < timeout:
                time.sleep(0.1)
                session.rollback()
                backlog = audit_repository.backlog(session, 0)[0]
    finally:
        engine.dispose()
    return {
        "unsealed_at_end": first,
        "seconds_to_seal": round(time.monotonic() - started, 1),
        "unsealed_after": backlog,
    }


def _client_and_codes(url: str, sample: int) -> tuple[str, str, list[str]]:
    engine = make_engine(url, pool_size=1)
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        session.add(
            RatePlanRow(
                name=PLAN,
                requests_per_second=1_000_000.0,
                burst=1_000_000_000,
                daily_quota=2_000_000_000,
                updated_at=utcnow(),
            )
        )
        session.flush()
        row, secret = create_client(
            session,
            ClientCreate(
                name="bench-platform",
                scopes=["credit:check", "credit:detail"],
                purposes=["ONBOARDING"],
                rate_plan=PLAN,
            ),
        )
        client_id = row.client_id
        codes = list(
            session.scalars(
                text("SELECT uscc FROM merchants ORDER BY random() LIMIT :n"), {"n": sample}
            )
        )
    engine.dispose()
    assert secret is not None
    return client_id, secret, codes


LUA = """
local codes = {%(codes)s}
local n = #codes
local i = 0
local headers = {["Authorization"] = "Bearer %(token)s", ["Content-Type"] = "application/json"}
request = function()
  i = i + 1
  local body = '{"uscc":"' .. codes[(i %% n) + 1] .. '","purpose":"ONBOARDING"}'
  return wrk.format("POST", "%(path)s", headers, body)
end
"""


def _wrk(
    base: str, path: str, token: str, codes: list[str], seconds: int, tmp: Path, connections: int
) -> dict[str, float]:
    script = tmp / "post.lua"
    script.write_text(
        LUA % {"codes": ",".join(f'"{c}"' for c in codes), "token": token, "path": path}
    )
    cmd = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        "-s",
        str(script),
        "--latency",
        base,
    ]
    subprocess.run([*cmd[:1], "-d3s", *cmd[1:]], check=True, capture_output=True)  # warm-up
    out = subprocess.run(
        [*cmd[:1], f"-d{seconds}s", *cmd[1:]], check=True, capture_output=True, text=True
    ).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    assert rps, out
    return {
        "rps": round(float(rps.group(1))),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",  # type: ignore[dict-item]
    }


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median throughput (its own latencies with it); errors summed over all."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["non_2xx"] = sum(int(run["non_2xx"]) for run in runs)
    median["socket_errors"] = "; ".join(str(r["socket_errors"]) for r in runs if r["socket_errors"])  # type: ignore[assignment]
    median["runs_rps"] = [run["rps"] for run in runs]  # type: ignore[assignment]
    return median


def _batch_latency(base: str, token: str, codes: list[str], runs: int) -> dict[str, float]:
    items = [{"uscc": codes[i % len(codes)]} for i in range(1000)]
    body = {"purpose": "ONBOARDING", "items": items}
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    with httpx.Client(base_url=base, timeout=60) as http:
        http.post("/v1/credit-checks/batch", json=body, headers=headers)  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            response = http.post("/v1/credit-checks/batch", json=body, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.text[:300]
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(times[-1], 1),
        "bytes": len(response.content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--merchants", type=int, default=10_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating check and bare runs (median ratio)"
    )
    parser.add_argument("--batch-runs", type=int, default=10)
    parser.add_argument("--only-check", action="store_true", help="skip the bare run and batches")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--target", default="service.asgi:app", help="ASGI app to load")
    parser.add_argument(
        "--sequencer",
        choices=["embedded", "worker"],
        default="embedded",
        help="who seals the audit trail: a thread in the API processes (default), or one "
        "`creditshare worker` process beside them on the same cores",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")

    tmp = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    try:
        url = _database(args.db, args.pg, tmp)
        env = {
            "CREDITSHARE_DATABASE_URL": url,
            "CREDITSHARE_DATA_DIR": str(tmp),
            "CREDITSHARE_MASTER_KEY": MASTER_KEY,
            "CREDITSHARE_LOG_LEVEL": "WARNING",
        }
        if args.db == "postgres":
            env["CREDITSHARE_REDIS_URL"] = args.redis
            import redis

            redis.Redis.from_url(args.redis).flushdb()
        started = time.perf_counter()
        _cli(env, "db", "upgrade")
        _cli(env, "demo", "seed", "--merchants", str(args.merchants))
        seed_s = time.perf_counter() - started
        if args.db == "postgres":
            _analyze(url)
        client_id, secret, codes = _client_and_codes(url, 1000)
        result: dict[str, object] = {
            "db": args.db + ("+redis" if args.db == "postgres" else ""),
            "merchants": args.merchants,
            "seed_seconds": round(seed_s, 1),
        }
        sequencer = args.sequencer
        result["sequencer"] = sequencer
        serve_env = dict(env)
        if sequencer == "worker":
            serve_env["CREDITSHARE_EMBEDDED_SEQUENCER"] = "false"
        with (
            sealing_worker(env, sequencer == "worker"),
            server(args.target, serve_env, args.workers) as base,
        ):
            token = httpx.post(
                f"{base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client_id, secret),
            ).json()["access_token"]
            sizes = []
            for code in codes[:50]:  # the bare body: as long as a check's, on average
                sample = httpx.post(
                    f"{base}/v1/credit-checks",
                    json={"uscc": code, "purpose": "ONBOARDING"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert sample.status_code == 201, sample.text
                sizes.append(len(sample.content))
            size = round(statistics.mean(sizes))
            result["body_bytes"] = size
            if args.db == "postgres":
                # Some load, then planner statistics for the audit tables as they are under
                # load, not as seeding left them (empty), as autovacuum would gather them:
                # with the statistics of an empty log the sequencer's unsealed-event query
                # plans a hash anti-join over the whole log (161 ms against 38 ms for 54k
                # events in one measurement) and sealing fell behind.
                _wrk(base, "/v1/credit-checks", token, codes, 3, tmp, args.connections)
                _analyze(url)

            def check_run() -> dict[str, float]:
                return _wrk(
                    base, "/v1/credit-checks", token, codes, args.seconds, tmp, args.connections
                )

            if args.only_check:
                result["check"] = check_run()
                result["sealing"] = _sealing_lag(url)
                print(json.dumps(result))
                return
            with server(
                "bench.bare_app:app", {"BENCH_BODY_SIZE": str(size)}, args.workers
            ) as bare_base:
                # Check and bare runs alternate, both servers up (the idle one costs
                # nothing): the machine's speed drifts over minutes, and each ratio is
                # taken between neighbouring runs.
                checks: list[dict[str, float]] = []
                bares: list[dict[str, float]] = []
                for _ in range(args.rounds):
                    checks.append(check_run())
                    bares.append(
                        _wrk(bare_base, "/bare", "-", codes, args.seconds, tmp, args.connections)
                    )
            result["sealing"] = _sealing_lag(url)
            result["batch_1000"] = _batch_latency(base, token, codes, args.batch_runs)
        result["check"] = _median_run(checks)
        result["bare"] = _median_run(bares)
        ratios = [c["rps"] / b["rps"] for c, b in zip(checks, bares, strict=True)]
        result["round_ratios"] = [round(r, 3) for r in ratios]
        result["ratio"] = round(statistics.median(ratios), 3)
        print(json.dumps(result))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
