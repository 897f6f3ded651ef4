"""Processes for the multi-process audit tests: ``python -m tests.audit.procs <command> ...``.

``write URL DATA COUNT TAG``: COUNT events, one transaction each (as requests write them).
``seal URL DATA --stop-file F [--batch N] [--lease SECONDS] [--pause-in-batch]``: a sequencer
that drains until the stop file appears (then drains once more and prints how many it
sealed); with ``--pause-in-batch`` it prints ``IN_BATCH first last`` from inside its first
batch, before the commit, and waits there to be killed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from audit.sealer import Sequencer, log_origin
from tests.audit.support import add_events, standalone_parts


def _write(args: argparse.Namespace) -> None:
    engine, factory, _store = standalone_parts(args.url, Path(args.data))
    for _ in range(args.count):
        add_events(factory, 1, client_id=args.tag)
    engine.dispose()
    print("done", flush=True)


def _seal(args: argparse.Namespace) -> None:
    engine, factory, store = standalone_parts(args.url, Path(args.data))

    def pause(first: int, last: int) -> None:
        print(f"IN_BATCH {first} {last}", flush=True)
        time.sleep(600)

    sequencer = Sequencer(
        factory,
        store,
        log_origin("http://testserver"),
        batch_size=args.batch,
        use_lease=args.lease is not None,
        lease_seconds=args.lease or 10.0,
        holder=args.holder,
        before_commit=pause if args.pause_in_batch else None,
    )
    stop = Path(args.stop_file)
    sealed = 0
    while True:
        stopping = stop.exists()
        if sequencer.use_lease and not sequencer.acquire_lease():
            time.sleep(0.05)
        else:
            sealed += sequencer.drain()
        if stopping:
            break
        time.sleep(0.01)
    engine.dispose()
    print(f"sealed {sealed}", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write")
    write.add_argument("url")
    write.add_argument("data")
    write.add_argument("count", type=int)
    write.add_argument("tag")
    seal = commands.add_parser("seal")
    seal.add_argument("url")
    seal.add_argument("data")
    seal.add_argument("--stop-file", required=True)
    seal.add_argument("--batch", type=int, default=50)
    seal.add_argument("--lease", type=float, default=None)
    seal.add_argument("--holder", default=None)
    seal.add_argument("--pause-in-batch", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "write":
        _write(args)
    else:
        _seal(args)


if __name__ == "__main__":
    main(sys.argv[1:])
