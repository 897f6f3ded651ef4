"""Time and peak memory of ``creditshare demo seed`` on a fresh database.

    .venv/bin/python -m bench.seed_bench --merchants 1000000
    .venv/bin/python -m bench.seed_bench --merchants 1000000 \
        --database postgresql://postgres@127.0.0.1:5432/cs_bench

The database is created from scratch (a SQLite file in a temporary directory, or the
PostgreSQL database named in the URL, dropped and created again), migrated, then
seeded twice: a fresh load, then the same command again (idempotent: every line
unchanged). Each run is its own ``creditshare`` process; its wall time and peak RSS
come from ``os.wait4``. Prints one Markdown table row per run.

``--pipeline-only`` times just the import pipeline instead, in this process: the
lines are generated first (kept in memory, so use a modest ``--merchants``), then fed
to a fresh database as already split NDJSON lines, batch size 1000, through the
pipeline ``POST /v1/admin/imports`` and ``creditshare import`` use (without their line
splitting and numbering), then fed again (all unchanged).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from service.db.engine import make_engine
from service.models import CreditRecord, Merchant, RecordHistory

ROOT = Path(__file__).resolve().parents[1]


def fresh_database(url: str | None, workdir: Path) -> str:
    if url is None:
        return f"sqlite:///{(workdir / 'bench.db').as_posix()}"
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{parsed.database}"')
    return url


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS in MiB and exit code of one ``creditshare`` command.

    CPU time (user + system) is reported next to wall time because a shared machine
    stretches wall time by whatever else runs on it; the command itself is one thread.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, usage.ru_maxrss // 1024, os.waitstatus_to_exitcode(status)


def counts(url: str) -> tuple[int, int, int]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            return tuple(  # type: ignore[return-value]
                int(conn.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Merchant, CreditRecord, RecordHistory)
            )
    finally:
        engine.dispose()


def pipeline_only(url: str, merchants: int) -> None:
    import orjson

    from service.crypto import KeyRing
    from service.db.migrate import upgrade
    from service.db.session import make_sessionmaker
    from service.demo.generator import generate
    from service.imports.pipeline import ImportPipeline

    upgrade(url)
    lines = [orjson.dumps(line) for line in generate(merchants)]
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    backend = make_url(url).get_backend_name()
    print("| database | run | lines | wall s | lines/s (wall) | CPU s | lines/CPU s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label in ("fresh", "again (all unchanged)"):
        pipeline = ImportPipeline(sessions, KeyRing(b"k" * 32), actor="bench")
        wall, cpu = time.perf_counter(), time.process_time()
        pipeline.feed_lines(lines)
        report = pipeline.finish()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert report.rejected_count == 0
        print(
            f"| {backend} | {label} | {report.lines:,} | {wall:.1f} | {report.lines / wall:,.0f} "
            f"| {cpu:.1f} | {report.lines / cpu:,.0f} |",
            flush=True,
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchants", type=int, default=1_000_000)
    parser.add_argument("--database", default=None, help="postgresql://... (default: SQLite)")
    parser.add_argument("--pipeline-only", action="store_true", help="time the pipeline alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seed-bench-") as tmp:
        workdir = Path(tmp)
        url = fresh_database(args.database, workdir)
        if args.pipeline_only:
            pipeline_only(url, args.merchants)
            return
        env = {
            **os.environ,
            "CREDITSHARE_DATABASE_URL": url,
            "CREDITSHARE_DATA_DIR": str(workdir / "data"),
            "CREDITSHARE_MASTER_KEY": "bench-master-key-0123456789abcdefghijklmnop",
            "CREDITSHARE_ENV": "dev",
        }
        *_, code = run(["db", "upgrade"], env)
        if code != 0:
            raise SystemExit(f"db upgrade failed ({code})")
        backend = make_url(url).get_backend_name()
        seed = ["demo", "seed", "--merchants", str(args.merchants)]
        print(
            "| database | run | merchants | lines | wall s | lines/s (wall) "
            "| CPU s | lines/CPU s | peak RSS MiB |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for label in ("fresh", "again (all unchanged)"):
            elapsed, cpu, rss, code = run(seed, env)
            if code != 0:
                raise SystemExit(f"seed failed ({code})")
            merchants, records, history = counts(url)
            lines = merchants + records
            print(
                f"| {backend} | {label} | {merchants:,} | {lines:,} | {elapsed:.1f} "
                f"| {lines / elapsed:,.0f} | {cpu:.1f} | {lines / cpu:,.0f} | {rss} |",
                flush=True,
            )
        print(f"\n{records:,} records, {history:,} history rows.")


if __name__ == "__main__":
    main()
