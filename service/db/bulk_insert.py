"""Multi-row INSERTs handed straight to the driver, for the hot paths.

A Core ``executemany`` spends most of its time in Python before the driver sees a row:
statement compilation lookups, the execution context, and each column's bind processing
(the UTC type decorator, the dialect's DATETIME formatting, JSON serialisation). For the
two rows every credit check writes that was about a tenth of a check's CPU. Here each
table's statement is rendered once per dialect, each column's conversion is chosen once,
and the rows go to the driver through ``Connection.exec_driver_sql``, so they still join the
caller's transaction and SQLAlchemy's connection events and error translation still apply:
on SQLite as tuples to ``executemany``; on PostgreSQL as one statement whose one parameter
is the rows as a JSON array, read by ``json_to_recordset`` (encoded by orjson, in C; one
round trip, and several tables' inserts can be one statement, which COPY cannot:
:func:`run_as_one_statement`).

The conversions write exactly what the column types write:
``tests/service/test_bulk_insert.py`` reads rows inserted both ways back through the
ORM and through raw SQL, on SQLite and PostgreSQL, and requires them to be identical.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Connection, Dialect, Integer, Table

from service.db import async_pg
from service.db.base import UTCDateTime

Convert = Callable[[Any], Any]
_NOTHING = object()


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


def _sqlite_utc(value: datetime | None) -> str | None:
    # The storage format of SQLAlchemy's SQLite DATETIME, always with microseconds, so that
    # timestamps written here sort and compare with those written by Core.
    if value is None:
        return None
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _server_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _json(value: object) -> str | None:
    # The serialiser of SQLAlchemy's JSON type (json.dumps), so stored documents match.
    return None if value is None else json.dumps(value)


def _converter(column_type: object, dialect: str) -> Convert | None:
    if isinstance(column_type, UTCDateTime):
        return _sqlite_utc if dialect == "sqlite" else _server_utc
    if isinstance(column_type, JSON):
        return _json
    return None


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (...)`` for rows given as mappings that all
    hold exactly ``columns``; rendered once per dialect."""

    def __init__(
        self, table: Table, columns: Sequence[str], *, long_text: Sequence[str] = ()
    ) -> None:
        """``long_text``: text columns whose values are long (a stored JSON document, say).
        On PostgreSQL they do not go inside the JSON rows, where each of their quotes would
        be escaped, and un-escaped by the server character by character (parsing the JSON
        rows was a fifth of its CPU on the single-check path, most of it the stored
        bodies), but each as a text array in binary, zipped with the rows by ``ROWS
        FROM``."""
        unknown = [name for name in (*columns, *long_text) if name not in table.c]
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {unknown}")
        not_text = [n for n in long_text if table.c[n].type.python_type is not str]
        if not_text or not set(long_text) <= set(columns):
            raise ValueError(f"long_text must name text columns among columns: {long_text}")
        self._table = table
        self._columns = tuple(columns)
        self._long = tuple(columns.index(name) for name in long_text)
        self._short = tuple(i for i in range(len(self._columns)) if i not in self._long)
        # A row's values in column order, read in C (itemgetter of one name gives no tuple).
        self._values: Callable[[Mapping[str, object]], Sequence[object]] = (
            itemgetter(*self._columns)
            if len(self._columns) > 1
            else lambda row: (row[self._columns[0]],)
        )
        self._rendered: dict[str, tuple[str, tuple[Convert | None, ...]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, tuple[Convert | None, ...]]:
        rendered = self._rendered.get(dialect.name)
        if rendered is None:
            quote = dialect.identifier_preparer.quote
            # Identifiers from our own table metadata (checked in __init__), quoted; values
            # are always bound parameters.
            if dialect.name == "postgresql":
                sql = self._from_json(quote)
            else:
                marker = "?" if dialect.paramstyle == "qmark" else "%s"
                names = ", ".join(quote(name) for name in self._columns)
                values = ", ".join(marker for _ in self._columns)
                sql = f"INSERT INTO {quote(self._table.name)} ({names}) VALUES ({values})"  # noqa: S608
            converters = tuple(
                _converter(self._table.c[name].type, dialect.name) for name in self._columns
            )
            rendered = self._rendered[dialect.name] = (sql, converters)
        return rendered

    def _from_json(self, quote: Callable[[str], str]) -> str:
        """``INSERT ... SELECT`` from the rows given as one JSON array of objects (and each
        long text column as a text array beside it). Strings are read as ``text`` and
        converted by the insert itself, as for any value bound to the column (too long for
        a ``varchar(n)`` is an error, never a truncation); a JSON column's value arrives as
        the text ``_json`` wrote, stored as it is."""
        fields: list[str] = []
        selected: dict[str, str] = {}
        for index in self._short:
            name = self._columns[index]
            column_type, quoted = self._table.c[name].type, quote(name)
            if isinstance(column_type, UTCDateTime):
                fields.append(f"{quoted} timestamptz")
            elif isinstance(column_type, Integer):
                fields.append(f"{quoted} bigint")
            else:
                fields.append(f"{quoted} text")
            selected[name] = f"{quoted}::json" if isinstance(column_type, JSON) else quoted
        rows = "json_to_recordset(%s::json)"
        if self._long:
            arrays = "".join(", unnest(%b::text[])" for _ in self._long)
            aliases = ", ".join(quote(self._columns[i]) for i in (*self._short, *self._long))
            source = f"ROWS FROM ({rows} AS ({', '.join(fields)}){arrays}) AS r({aliases})"
        else:
            source = f"{rows} AS r({', '.join(fields)})"
        names = ", ".join(quote(name) for name in self._columns)
        values = ", ".join(selected.get(name, quote(name)) for name in self._columns)
        return f"INSERT INTO {quote(self._table.name)} ({names}) SELECT {values} FROM {source}"  # noqa: S608

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert ``rows`` in the connection's current transaction (nothing for none)."""
        self.prepare(connection.dialect, rows).run(connection)

    def prepare(self, dialect: Dialect, rows: Sequence[Mapping[str, object]]) -> PreparedInsert:
        """The statement and its parameters for ``rows``, ready to :meth:`PreparedInsert.run`:
        the conversions done beforehand, e.g. before a writer takes SQLite's write gate,
        which then is held only for the driver's work."""
        if not rows:
            return PreparedInsert(dialect.name, None, None)
        sql, converters = self._for(dialect)
        values = self._values
        converting = [(index, c) for index, c in enumerate(converters) if c is not None]
        # A column's value is often the very same object row after row (a group's time,
        # stamped on each of its checks and events): converted once.
        last: list[tuple[object, object]] = [(_NOTHING, None)] * len(converting)
        converted_rows: list[list[Any]] = []
        for row in rows:
            converted = list(values(row))
            for n, (index, convert) in enumerate(converting):
                value = converted[index]
                seen, result = last[n]
                if value is not seen:
                    result = convert(value)
                    last[n] = (value, result)
                converted[index] = result
            converted_rows.append(converted)
        if dialect.name == "postgresql":
            columns = self._columns
            short, long = self._short, self._long
            if not long:
                objects = [dict(zip(columns, row, strict=True)) for row in converted_rows]
            else:
                objects = [{columns[i]: row[i] for i in short} for row in converted_rows]
            payload = orjson.dumps(objects).decode()
            texts = [[row[i] for row in converted_rows] for i in long]
            return PreparedInsert(dialect.name, sql, (payload, *texts))
        return PreparedInsert(dialect.name, sql, [tuple(row) for row in converted_rows])


@dataclass(frozen=True, slots=True)
class PreparedInsert:
    """A :class:`BulkInsert` of some rows, converted for one dialect (no statement for none)."""

    dialect: str
    sql: str | None
    parameters: tuple[Any, ...] | list[tuple[Any, ...]] | None

    def run(self, connection: Connection) -> None:
        """Execute in the connection's current transaction."""
        self._check_dialect(connection)
        if self.sql is not None:
            connection.exec_driver_sql(self.sql, self.parameters)

    def _check_dialect(self, connection: Connection) -> None:
        if connection.dialect.name != self.dialect:
            raise ValueError(f"rows prepared for {self.dialect}, not {connection.dialect.name}")


def run_as_one_statement(connection: Connection, inserts: Sequence[PreparedInsert]) -> None:
    """``inserts``, in order, as a single statement on PostgreSQL: each but the last as a
    data-modifying ``WITH`` clause, which PostgreSQL runs exactly once and to completion
    whether or not anything reads it. A statement is atomic, so outside a transaction
    (``round_trips.without_transaction``) the inserts commit together or not at all, as
    their own transaction, in one round trip: no ``BEGIN``, no ``COMMIT``, one statement
    to parse, plan and answer. Elsewhere (SQLite) they run one after the other in the
    connection's current transaction."""
    present = [insert for insert in inserts if insert.sql is not None]
    for insert in present:
        insert._check_dialect(connection)
    if connection.dialect.name != "postgresql" or len(present) < 2:
        for insert in present:
            insert.run(connection)
        return
    connection.exec_driver_sql(*_one_statement(present))


async def run_as_one_statement_async(
    connection: psycopg.AsyncConnection[Any], inserts: Sequence[PreparedInsert]
) -> None:
    """:func:`run_as_one_statement` on an autocommit PostgreSQL connection of the event
    loop (``service.db.async_pg``): one statement, its own transaction."""
    present = [insert for insert in inserts if insert.sql is not None]
    if not present:
        return
    if any(insert.dialect != "postgresql" for insert in present):
        raise ValueError("prepared for another database than PostgreSQL")
    await async_pg.execute(connection, *_one_statement(present))


def _one_statement(present: Sequence[PreparedInsert]) -> tuple[str, tuple[Any, ...]]:
    """PostgreSQL inserts prepared with JSON rows, as one statement and its parameters."""
    clauses = ", ".join(f"inserted_{n} AS ({insert.sql})" for n, insert in enumerate(present[:-1]))
    parameters: list[Any] = []
    for insert in present:
        assert isinstance(insert.parameters, tuple)  # its JSON rows (and text arrays)
        parameters.extend(insert.parameters)
    sql = f"WITH {clauses} {present[-1].sql}" if clauses else str(present[-1].sql)
    return sql, tuple(parameters)
