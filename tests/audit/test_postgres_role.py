"""The PostgreSQL role documented in docs/audit.md: the API can append and read audit history
and seal it, but not rewrite it, even once the append-only triggers are gone."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from audit.queries import verify_database
from audit.sealer import Sequencer, log_origin
from auth.keys import KeyStore
from service.crypto import load_keyring
from service.db.engine import make_engine
from service.db.session import make_sessionmaker
from tests.audit.support import (
    add_events,
    drop_append_only_guards,
    fresh_database,
    log_state,
    standalone_parts,
)
from tests.conftest import make_settings
from tests.fixtures.databases import using_postgres

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not using_postgres(), reason="roles and grants are PostgreSQL's"),
]
DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
HISTORY = {
    "audit_events": "status",
    "audit_log": "sealed_at",
    "audit_checkpoints": "created_at",
    "credit_record_history": "reason",
}


def documented_sql() -> str:
    block = re.search(r"```sql\n-- role: creditshare_app\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/audit.md lost its role block"
    return block.group(1)


@pytest.fixture
def app_role(tmp_path: Path) -> Iterator[tuple[str, str]]:
    role = f"cs_app_{uuid.uuid4().hex[:10]}"
    with fresh_database(tmp_path, "role") as url:
        database = make_url(url).database
        sql = (
            documented_sql()
            .replace("creditshare_app", role)
            .replace("DATABASE creditshare", f'DATABASE "{database}"')
            .replace("LOGIN PASSWORD 'change-me'", "NOLOGIN")
        )
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
        try:
            yield url, role
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP OWNED BY "{role}"')
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _as_role(url: str, role: str) -> Engine:
    engine = make_engine(url, pool_size=2)

    def set_role(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f'SET ROLE "{role}"')
        cursor.close()
        dbapi_connection.commit()

    event.listen(engine, "connect", set_role)
    return engine


def test_the_app_role_appends_and_seals_but_cannot_rewrite(
    app_role: tuple[str, str], tmp_path: Path
) -> None:
    url, role = app_role
    owner, _factory, _store = standalone_parts(url, tmp_path / "data")  # the audit key
    owner.dispose()
    drop_append_only_guards(url)  # the grants alone must hold
    engine = _as_role(url, role)
    factory = make_sessionmaker(engine)
    with factory() as session:
        assert session.scalar(text("SELECT current_user")) == role
    settings = make_settings(url, None, tmp_path / "data")
    store = KeyStore(factory, load_keyring(settings), overlap_seconds=0)
    store.refresh()
    add_events(factory, 5)
    origin = log_origin("http://testserver")
    sequencer = Sequencer(factory, store, origin)
    assert sequencer.acquire_lease()
    assert sequencer.drain() == 5
    assert log_state(factory)[0] == [1, 2, 3, 4, 5]
    with factory() as session:
        assert verify_database(session, store, origin).ok
    for table, column in HISTORY.items():
        for statement in (
            f"UPDATE {table} SET {column} = {column}",
            f"DELETE FROM {table}",
            f"TRUNCATE {table} CASCADE",
        ):
            with factory() as session, pytest.raises(ProgrammingError, match="permission denied"):
                session.execute(text(statement))
    engine.dispose()
