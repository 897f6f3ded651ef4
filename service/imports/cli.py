"""``creditshare import FILE.ndjson [--dry-run]``: the import pipeline from a shell.

Exit codes: 0 every line was stored (accepted, updated or unchanged), 1 some lines
were rejected (the others are stored), 2 the input or the setup is unusable (no such
file, bad settings, database unreachable or not migrated), 3 the database failed
during the import (batches committed before the failure stay; importing again is
idempotent), 130 interrupted (Ctrl-C or SIGTERM: the batch in progress is rolled back,
those committed before stay; importing the same file again completes it).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from service.imports.console import (
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_REJECTED,
    CommandRun,
    Store,
    byte_progress,
    fail,
    open_store,
    operator,
    print_rejections,
    record_run,
    summary_table,
)
from service.imports.lines import LineSplitter
from service.imports.pipeline import ImportPipeline

CHUNK_BYTES = 1 << 20
EXIT_INTERRUPTED = 130
EXIT_INTERRUPTED_STATUS = 499
"""The audit status of an interrupted run (an error outcome: it did not finish)."""


class _StopRequests:
    """While an import runs, Ctrl-C or SIGTERM asks it to stop at the next chunk boundary,
    never inside a batch's commit: the batches committed so far stay and are counted, the
    one being filled is dropped. A second signal stops at once (``KeyboardInterrupt``)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._request) for sig in self.SIGNALS}
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _request(self, _signum: int, _frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _stored(counts: dict[str, object]) -> str:
    return ", ".join(f"{counts[key]} {key}" for key in ("accepted", "updated", "unchanged"))


def _open(file: Path, err: Console) -> tuple[IO[bytes], int | None]:
    if str(file) == "-":
        return sys.stdin.buffer, None
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise fail(err, f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None
    if not file.is_file():
        handle.close()
        raise fail(err, f"not a regular file: {file}")
    return handle, file.stat().st_size


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="NDJSON file, one merchant or record per line ('-' reads stdin)",
            show_default=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and count only; write nothing")
    ] = False,
    show_errors: Annotated[
        int, typer.Option("--show-errors", min=0, help="How many rejected lines to print")
    ] = 20,
) -> None:
    """Import merchants and records from an NDJSON file (idempotent).

    Exit codes:
    0 every line stored;
    1 some lines rejected (the others stored);
    2 the file or the setup is unusable;
    3 the database failed mid-way;
    130 interrupted (Ctrl-C, SIGTERM).
    Batches committed before a failure or an interruption stay: import again to complete.
    """
    err = Console(stderr=True)
    out = Console()
    handle, size = _open(file, err)
    try:
        with open_store(err) as store, _StopRequests() as stop:
            pipeline = ImportPipeline(
                store.sessions, store.keyring, actor=f"cli:{operator()}", dry_run=dry_run
            )
            splitter = LineSplitter()
            try:
                with byte_progress(err) as progress:
                    task = progress.add_task("importing", total=size)
                    while not stop.requested and (chunk := handle.read(CHUNK_BYTES)):
                        pipeline.process(splitter.feed(chunk))
                        progress.advance(task, len(chunk))
                    if not stop.requested:
                        pipeline.process(splitter.close())
                        report = pipeline.finish()
            except SQLAlchemyError as exc:
                pipeline.close()
                raise fail(
                    err,
                    f"database failed during the import ({type(exc).__name__}); "
                    "batches stored before stay stored, importing again is safe",
                    EXIT_DATABASE,
                ) from None
            if stop.requested:
                raise _interrupted(store, pipeline, file, err)
            record_run(
                store,
                CommandRun(
                    command="creditshare import",
                    action="import.run",
                    status=200,
                    details=report.counts(),
                    target_type="import",
                    target_id=file.name[:200] or "-",
                ),
            )
    finally:
        if handle is not sys.stdin.buffer:
            handle.close()
    out.print(summary_table(report, f"Import of {file.name or 'stdin'}"))
    print_rejections(err, report, show_errors)
    raise typer.Exit(EXIT_OK if report.rejected_count == 0 else EXIT_REJECTED)


def _interrupted(store: Store, pipeline: ImportPipeline, file: Path, err: Console) -> typer.Exit:
    """Stopped on request: the batch being filled is dropped; what was committed is told
    and recorded (an ``import.run`` event marked interrupted)."""
    pipeline.close()
    report = pipeline.report
    counts = report.counts()
    record_run(
        store,
        CommandRun(
            command="creditshare import",
            action="import.run",
            status=EXIT_INTERRUPTED_STATUS,
            details={**counts, "interrupted": True},
            target_type="import",
            target_id=file.name[:200] or "-",
        ),
    )
    if report.dry_run:
        told = "a dry run: nothing was written"
    else:
        told = f"the batches committed stay ({_stored(counts)}); importing the same file again "
        told += "completes it"
    return fail(err, f"interrupted after {report.lines} lines: {told}", EXIT_INTERRUPTED)
