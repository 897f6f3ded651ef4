"""Per-acquire cost of the rate limiter backends (a one-off measurement, not a test).

Run: PYTHONPATH=. .venv/bin/python bench/limiter_micro.py [redis-url]
(default redis://127.0.0.1:6379/15). Prints wall time and this process's CPU time per
call; the Redis keys it creates are deleted at the end.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable

from service.ratelimit import (
    FallbackLimiter,
    InProcessLimiter,
    LimiterUnavailable,
    RatePlan,
    RedisLimiter,
)
from service.ratelimit.decision import Decision

PLAN = RatePlan("bench", requests_per_second=1e6, burst=1_000_000, daily_quota=10**12)


def measure(label: str, n: int, op: Callable[[int], object], repeats: int = 5) -> None:
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(n):
            op(i)
        walls.append((time.perf_counter() - w0) / n * 1e6)
        cpus.append((time.process_time() - c0) / n * 1e6)
    print(
        f"{label:<52} wall {statistics.median(walls):8.2f} us   "
        f"cpu {statistics.median(cpus):8.2f} us   (median of {repeats} x {n})"
    )


def threaded(label: str, threads: int, per_thread: int, op: Callable[[int], Decision]) -> None:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for i in range(per_thread):
            op(i)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    c0 = time.process_time()
    barrier.wait()
    w0 = time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - w0
    total = threads * per_thread
    cpu = (time.process_time() - c0) / total * 1e6
    print(
        f"{label:<52} {total / wall:9.0f} ops/s   cpu {cpu:6.1f} us/op"
        f"   ({threads} threads x {per_thread})"
    )


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/15"
    tag = uuid.uuid4().hex[:8]

    mem = InProcessLimiter()
    measure("in-process acquire, one key", 200_000, lambda i: mem.acquire("k", PLAN))
    keys = [f"k{i}" for i in range(10_000)]
    measure(
        "in-process acquire, 10k keys round robin",
        200_000,
        lambda i: mem.acquire(keys[i % 10_000], PLAN),
    )
    measure("in-process peek", 200_000, lambda i: mem.peek("k", PLAN))
    threaded("in-process acquire, contended lock", 8, 50_000, lambda i: mem.acquire("k", PLAN))

    rl = RedisLimiter.from_url(url, max_connections=64)
    used: list[str] = []
    try:
        key = f"bench:{tag}"
        used.append(key)
        rl.acquire(key, PLAN)  # load the script
        measure("redis acquire (EVALSHA, one round trip)", 5_000, lambda i: rl.acquire(key, PLAN))
        measure("redis peek", 5_000, lambda i: rl.peek(key, PLAN))
        many = [f"bench:{tag}:{i}" for i in range(1000)]
        used.extend(many)
        measure(
            "redis acquire, 1000 keys round robin",
            5_000,
            lambda i: rl.acquire(many[i % 1000], PLAN),
        )
        threaded("redis acquire, one key", 8, 2_000, lambda i: rl.acquire(key, PLAN))
        threaded("redis acquire, one key", 32, 500, lambda i: rl.acquire(key, PLAN))

        fb = FallbackLimiter(rl, InProcessLimiter(), nodes=4, quota_fail_closed=False)
        measure(
            "fallback, Redis healthy (adds to redis acquire)",
            5_000,
            lambda i: fb.acquire(key, PLAN),
        )
    finally:
        for k in used:
            rl.reset(k)
        rl.close()

    dead = RedisLimiter.from_url("redis://127.0.0.1:1/0")
    fb_dead = FallbackLimiter(dead, InProcessLimiter(), nodes=4, quota_fail_closed=False)
    measure(
        "fallback, Redis down, within cool-down (local)",
        200_000,
        lambda i: fb_dead.acquire("k", PLAN),
    )
    w0 = time.perf_counter()
    with contextlib.suppress(LimiterUnavailable):
        dead.acquire("k", PLAN)
    failed_us = (time.perf_counter() - w0) * 1e6
    print(f"{'one failed Redis call (connection refused)':<52} wall {failed_us:8.1f} us")
    dead.close()


if __name__ == "__main__":
    main()
