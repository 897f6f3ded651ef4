"""`make bench`: every benchmark in one run, summarised at the top of bench/RESULTS.md.

Each benchmark keeps its own detailed section in RESULTS.md (written when it was studied);
this runner re-measures the headline figures on the current code and machine, with the
bare-framework baseline measured in the same run, and rewrites the "Latest make bench"
section. Sizes are modest by default so the run takes minutes; BENCH_MERCHANTS takes a
comma-separated list of registry sizes for the registry-size comparison (seeding a
million merchants takes minutes per database).

    make bench                              # or: .venv/bin/python -m bench.run
    BENCH_MERCHANTS=10000,1000000 make bench
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
START = "<!-- make-bench:start -->"
END = "<!-- make-bench:end -->"
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")


PG_VARIANTS = {
    "worker": "PostgreSQL + Redis, sealed by `creditshare worker` (the documented deployment)",
    "embedded": "PostgreSQL + Redis, sequencer embedded in an API process",
}


def _python(*args: str, timeout: int = 3600) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        print(f"{' '.join(args)} failed:\n{completed.stderr[-3000:]}", file=sys.stderr)
        return f"FAILED ({completed.returncode}): {completed.stderr.strip().splitlines()[-1:]}"
    return completed.stdout.strip()


def _last_json(output: str) -> dict[str, object]:
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                continue
    return {"error": output[-300:]}


def _failed(run: object) -> bool:
    """A load run that got errors measured something else than checks."""
    return isinstance(run, dict) and bool(run.get("non_2xx") or run.get("socket_errors"))


def _row(label: str, result: dict[str, object]) -> str:
    if "error" in result:  # the run itself failed: say how, not a row of question marks
        reason = " ".join(str(result["error"]).split())[-160:].replace("|", "/")
        return f"| {label} | {result.get('merchants', '?')} | FAILED: {reason} | | | | | | |"
    if _failed(result.get("check")) or _failed(result.get("bare")):
        return f"| {label} | {result.get('merchants', '?')} | INVALID: errors in the load run | | | | | | |"
    check = result.get("check") or {}
    bare = result.get("bare") or {}
    batch = result.get("batch_1000") or {}
    sealing = result.get("sealing") or {}
    assert isinstance(sealing, dict)
    assert isinstance(check, dict)
    assert isinstance(bare, dict)
    assert isinstance(batch, dict)
    return (
        f"| {label} | {result.get('merchants', '?')} | {check.get('rps', '?')} | {check.get('p50_ms', '?')} | "
        f"{check.get('p99_ms', '?')} | {bare.get('rps', '?')} | {result.get('ratio', '?')} | "
        f"{batch.get('median_ms', '?')} | {sealing.get('seconds_to_seal', '?')} |"
    )


def _audit_overhead(with_trail: dict[str, object], without: dict[str, object]) -> str:
    on, off = with_trail.get("check") or {}, without.get("check") or {}
    assert isinstance(on, dict)
    assert isinstance(off, dict)
    if not on.get("rps") or not off.get("rps") or _failed(on) or _failed(off):
        return "Audit overhead: not measured (a run failed)."
    drop = 1 - float(on["rps"]) / float(off["rps"])
    return (
        f"Audit overhead (SQLite, same run): {off['rps']} req/s without the trail "
        f"(`bench/noaudit_app.py`), {on['rps']} with it: {drop:.0%} lower (target at most 15%)."
    )


def main() -> None:
    sizes = [s.strip() for s in os.environ.get("BENCH_MERCHANTS", "10000").split(",") if s.strip()]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    token = _last_json(_python("bench.token_bench"))
    rows: list[str] = []
    no_audit_line = ""
    for merchants in sizes:
        sqlite = _last_json(
            _python("bench.check_bench", "--db", "sqlite", "--merchants", merchants)
        )
        if not no_audit_line:
            no_audit = _last_json(
                _python(
                    "bench.check_bench",
                    "--db",
                    "sqlite",
                    "--merchants",
                    merchants,
                    "--only-check",
                    "--target",
                    "bench.noaudit_app:app",
                )
            )
            no_audit_line = _audit_overhead(sqlite, no_audit)
        rows.append(_row("embedded default (SQLite, in-process limiter)", sqlite))
        # PostgreSQL as docs/operations.md deploys it: the audit trail sealed by a
        # `creditshare worker` beside the API processes (on the same two cores), whose own
        # sequencer threads are off; at the first size also with the sequencer embedded in
        # an API process (the setting's default), for comparison.
        shapes = ["worker", "embedded"] if merchants == sizes[0] else ["worker"]
        for shape in shapes:
            postgres = _last_json(
                _python(
                    "bench.check_bench",
                    "--db",
                    "postgres",
                    "--merchants",
                    merchants,
                    "--pg",
                    PG,
                    "--redis",
                    REDIS,
                    "--sequencer",
                    shape,
                )
            )
            rows.append(_row(PG_VARIANTS[shape], postgres))
    audit = _python("bench.audit_bench", "--events", "20000", "--verify", "100000", "--pg", PG)
    lines = [
        START,
        "## Latest `make bench`",
        "",
        f"Run {started} (load average {load:.1f} at start), `make bench` "
        f"(`BENCH_MERCHANTS={','.join(sizes)}`). Server: uvicorn, 2 workers; load `wrk -t2 -c64 -d10s`; "
        "the bare FastAPI endpoint returns a pre-serialised body of the same size; check and bare "
        "runs alternate five times, the figures are the median run's and the ratio the median of "
        "the five neighbouring-run ratios. Last column: seconds until every audit event of the "
        "load was sealed, after it ended. On PostgreSQL the audit trail is sealed as "
        "`docs/operations.md` deploys it, by one `creditshare worker` process beside the API "
        "(`CREDITSHARE_EMBEDDED_SEQUENCER=false` on the API), on the same machine; the "
        "embedded row runs the sequencer as a thread of an API process instead.",
        "",
        "| variant | registry | checks req/s | p50 ms | p99 ms | bare req/s | ratio | 1000-item batch median ms | sealed within s |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        no_audit_line,
        "",
        f"Token validation per request: full ES256 verification {token.get('full_verification_us', '?')} µs, "
        f"validated-token cache hit {token.get('cached_us', '?')} µs (`python -m bench.token_bench`).",
        "",
        "Audit (`python -m bench.audit_bench --events 20000 --verify 100000`):",
        "",
        "```",
        audit,
        "```",
        END,
    ]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = "\n".join(lines)
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _m: block, text, flags=re.S)
    else:
        head, _, rest = text.partition("\n")
        text = f"{head}\n\n{block}\n{rest}"
    RESULTS.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
