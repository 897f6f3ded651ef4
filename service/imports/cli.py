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


class _TerminateAsInterrupt:
    """While an import runs, SIGTERM stops it as Ctrl-C does (the batch in progress rolled
    back, a message and an audit event), instead of killing the process mid-batch."""

    def __init__(self) -> None:
        self._previous: object = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._interrupt)

    @staticmethod
    def _interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
            self._previous = None


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
    terminated = _TerminateAsInterrupt()
    try:
        with open_store(err) as store:
            pipeline = ImportPipeline(
                store.sessions, store.keyring, actor=f"cli:{operator()}", dry_run=dry_run
            )
            splitter = LineSplitter()
            try:
                with byte_progress(err) as progress:
                    task = progress.add_task("importing", total=size)
                    while chunk := handle.read(CHUNK_BYTES):
                        pipeline.process(splitter.feed(chunk))
                        progress.advance(task, len(chunk))
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
            except KeyboardInterrupt:
                pipeline.close()
                counts = pipeline.report.counts()
                record_run(
                    store,
                    command="creditshare import",
                    action="import.run",
                    status=EXIT_INTERRUPTED_STATUS,
                    details={**counts, "interrupted": True},
                    target_type="import",
                    target_id=file.name[:200] or "-",
                )
                raise fail(
                    err,
                    f"interrupted after {pipeline.report.lines} lines: the batches committed "
                    f"before stay ({_stored(counts)}); importing the same file again "
                    "completes it",
                    EXIT_INTERRUPTED,
                ) from None
            record_run(
                store,
                command="creditshare import",
                action="import.run",
                status=200,
                details=report.counts(),
                target_type="import",
                target_id=file.name[:200] or "-",
            )
    finally:
        terminated.restore()
        if handle is not sys.stdin.buffer:
            handle.close()
    out.print(summary_table(report, f"Import of {file.name or 'stdin'}"))
    print_rejections(err, report, show_errors)
    raise typer.Exit(EXIT_OK if report.rejected_count == 0 else EXIT_REJECTED)
