"""Engine construction for the two supported databases.

Operators write plain ``sqlite:///...`` or ``postgresql://...`` URLs; the
drivers are ours (the stdlib sqlite3 and psycopg 3), so URLs are normalised here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalize_url(url: str) -> str:
    """Map plain scheme names onto the drivers this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another's lock (in SQLite's busy handler)."""
WAL_BACKSTOP_PAGES = 16_384
"""A write-ahead log this long (64 MiB in 4 KiB pages) is checkpointed by the commit that
reached it, as SQLite does by default at 1000 pages; below it, by the API's checkpointer
(``service.db.wal_checkpointer``)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 20) -> Engine:
    """An engine with sane pool and SQLite settings; creates the SQLite folder."""
    normalized = normalize_url(url)
    parsed = make_url(normalized)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            engine = create_engine(normalized, connect_args={"check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            normalized,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        normalized,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip per checkout on the hot path. A connection that
        # died (PostgreSQL restarted) fails its request with a clean 503, SQLAlchemy then
        # invalidates the pool, and the next requests reconnect.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
