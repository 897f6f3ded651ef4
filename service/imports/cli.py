"""``creditshare import FILE.ndjson [--dry-run]``: the import pipeline from a shell.

Exit codes: 0 every line was stored (accepted, updated or unchanged), 1 some lines
were rejected (the others are stored), 2 the input or the setup is unusable (no such
file, bad settings, database unreachable or not migrated), 3 the database failed
during the import (batches committed before the failure stay; importing again is
idempotent).
"""

from __future__ import annotations

import sys
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
    """Import merchants and records from an NDJSON file (idempotent; see the exit codes)."""
    err = Console(stderr=True)
    out = Console()
    handle, size = _open(file, err)
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
        if handle is not sys.stdin.buffer:
            handle.close()
    out.print(summary_table(report, f"Import of {file.name or 'stdin'}"))
    print_rejections(err, report, show_errors)
    raise typer.Exit(EXIT_OK if report.rejected_count == 0 else EXIT_REJECTED)
