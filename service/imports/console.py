"""What ``creditshare import`` and ``creditshare demo`` share: the store, progress, reports.

Commands open the same database and key ring as the server (same settings), refuse a
database whose schema is not current, and leave one audit event per run (actor kind
``operator``), so that data loaded from a shell is as traceable as data loaded over HTTP.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from audit.context import RequestAudit
from audit.recorder import record_in_session, record_standalone
from service.crypto import KeyRing, load_keyring
from service.ids import new_id
from service.imports.pipeline import ImportReport
from service.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
EXIT_DATABASE = 3


def fail(console: Console, message: str, code: int = EXIT_UNUSABLE) -> typer.Exit:
    console.print(f"error: {message}", style="bold red", highlight=False, markup=False)
    return typer.Exit(code)


def operator() -> str:
    """Who runs the command, for history rows and the audit trail."""
    try:
        return getpass.getuser()[:40]
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Store:
    settings: Settings
    sessions: sessionmaker[Session]
    keyring: KeyRing


@contextmanager
def open_store(console: Console) -> Iterator[Store]:
    """The configured database (schema checked) and key ring; exits 2 if unusable."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.db.engine import is_sqlite, make_engine
    from service.db.migrate import SchemaMismatch, ensure_current
    from service.db.session import make_sessionmaker

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(console, f"unsafe or invalid settings: {exc}") from None
    engine = make_engine(settings.effective_database_url, pool_size=2)
    if is_sqlite(engine):
        event.listen(engine, "connect", _large_sqlite_cache)
    try:
        try:
            ensure_current(engine)
        except SchemaMismatch as exc:
            raise fail(console, str(exc)) from None  # it says to run `creditshare db upgrade`
        except SQLAlchemyError as exc:
            raise fail(console, f"database unreachable ({type(exc).__name__})") from None
        yield Store(settings, make_sessionmaker(engine), load_keyring(settings))
    finally:
        engine.dispose()


def _large_sqlite_cache(dbapi_connection: Any, _record: Any) -> None:
    """A 64 MiB page cache for the command's own connections (SQLite's default is 2 MiB).

    Loading a large registry inserts codes in random order into the merchants' key
    index; once that index outgrows the cache, every batch rereads its pages.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


@dataclass(frozen=True, slots=True)
class CommandRun:
    """What the audit trail keeps of a command run: counts and names, never data or secrets."""

    command: str
    action: str
    status: int
    details: dict[str, object]
    target_type: str | None = None
    target_id: str | None = None

    def context(self) -> RequestAudit:
        ctx = RequestAudit(request_id=new_id("cli"), ip=None, method="CLI", path=self.command)
        ctx.set_actor(f"cli:{operator()}", f"{operator()} ({self.command})", "operator")
        ctx.action, ctx.target_type, ctx.target_id = self.action, self.target_type, self.target_id
        ctx.details.update(self.details)
        return ctx


def record_run(store: Store, run: CommandRun) -> None:
    """The run's audit event, in a transaction of its own."""
    record_standalone(store.sessions, run.context(), run.status)


def record_run_in(session: Session, run: CommandRun) -> None:
    """The run's audit event in the caller's transaction: the change and its event commit
    together, or neither does."""
    record_in_session(session, run.context(), run.status)


def byte_progress(console: Console) -> Progress:
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console)


def count_progress(console: Console) -> Progress:
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console)


def summary_table(report: ImportReport, title: str) -> Table:
    table = Table(title=title + (" (dry run: nothing written)" if report.dry_run else ""))
    table.add_column("")
    for name in ("accepted", "updated", "unchanged"):
        table.add_column(name, justify="right")
    table.add_column("rejected", justify="right")
    for label, counts in (("merchants", report.merchants), ("records", report.records)):
        table.add_row(label, str(counts.accepted), str(counts.updated), str(counts.unchanged), "")
    table.add_row(
        "total",
        str(report.accepted),
        str(report.updated),
        str(report.unchanged),
        str(report.rejected_count),
        style="bold",
    )
    table.caption = f"{report.lines} lines read"
    return table


def print_rejections(console: Console, report: ImportReport, limit: int) -> None:
    """Line number, field and message of the first ``limit`` rejected lines (never content)."""
    for rejection in report.rejected[:limit]:
        for field, message in rejection.errors:
            console.print(
                f"line {rejection.number}: {field}: {message}", highlight=False, markup=False
            )
    hidden = report.rejected_count - min(limit, len(report.rejected))
    if hidden > 0:
        console.print(f"... and {hidden} more rejected line(s)", highlight=False, markup=False)
