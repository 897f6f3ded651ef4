"""``creditshare audit ...``: verify the audit trail, and export it as an offline bundle.

``verify --bundle DIR`` needs nothing but the directory: no settings, no
database, no network. Without ``--bundle`` it verifies the configured database.
Exit codes: 0 verified, 1 tampering found, 2 the input could not be read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from audit.verify import VerifyResult
    from auth.keys import KeyStore
    from service.settings import Settings

audit_app = typer.Typer(no_args_is_help=True, help="Audit trail")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    from service.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise _fail(f"unsafe or invalid settings: {exc}") from None


@contextmanager
def _database(settings: Settings) -> Iterator[tuple[Session, KeyStore]]:
    """A session on the configured (migrated) database and the key store."""
    from auth.keys import KeyStore
    from service.crypto import load_keyring
    from service.db.engine import make_engine
    from service.db.migrate import SchemaMismatch, ensure_current
    from service.db.session import make_sessionmaker

    engine = make_engine(settings.effective_database_url, pool_size=1)
    try:
        try:
            ensure_current(engine)
        except SchemaMismatch as exc:
            raise _fail(str(exc)) from None
        factory = make_sessionmaker(engine)
        store = KeyStore(
            factory, load_keyring(settings), overlap_seconds=settings.key_overlap_seconds
        )
        store.refresh()
        with factory() as session:
            yield session, store
    finally:
        engine.dispose()


def _report(result: VerifyResult) -> None:
    typer.echo(
        json.dumps(
            {
                "ok": result.ok,
                "checked": result.checked,
                "first_bad_seq": result.first_bad_seq,
                "problem": result.problem,
            },
            ensure_ascii=False,
        )
    )
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("verify")
def verify(
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="A directory written by `audit export` (verified offline); "
            "default: the configured database",
            file_okay=False,
        ),
    ] = None,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", min=1, help="First seq to check")
    ] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", min=1, help="Last seq to check")] = None,
    trusted_keys: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-key",
            help="Verifier key obtained independently (repeatable); replaces the bundle's keys",
        ),
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A signed checkpoint note obtained independently (repeatable), e.g. the "
            "latest published one: events it seals must all be in the bundle",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Recompute every leaf and root, check every checkpoint signature and their consistency.

    Prints {"ok", "checked", "first_bad_seq", "problem"} as JSON; exits 1 when
    the trail was tampered with.
    """
    if from_seq is not None and to_seq is not None and to_seq < from_seq:
        raise _fail("--to-seq is before --from-seq")
    if bundle is not None:
        from audit.bundle import BundleError, verify_bundle

        if not bundle.is_dir():
            raise _fail(f"no bundle directory at {bundle} (`creditshare audit export --out`)")
        try:
            notes = [p.read_text(encoding="utf-8") for p in checkpoints or []]
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"cannot read a checkpoint file: {exc}") from None
        try:
            result = verify_bundle(
                bundle,
                trusted_keys=trusted_keys or None,
                extra_checkpoints=notes,
                from_seq=from_seq,
                to_seq=to_seq,
            )
        except BundleError as exc:
            raise _fail(str(exc)) from None
        _report(result)
        return
    if trusted_keys or checkpoints:
        raise _fail("--trusted-key and --checkpoint apply to --bundle only")
    from audit.queries import verify_database
    from audit.sealer import log_origin
    from service.problems import ProblemError

    settings = _settings()
    with _database(settings) as (session, store):
        try:
            result = verify_database(
                session, store, log_origin(settings.public_url), from_seq, to_seq
            )
        except ProblemError:
            raise _fail("invalid range") from None
    _report(result)


@audit_app.command("export")
def export(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to create (must be empty)", file_okay=False)
    ],
) -> None:
    """Write an offline bundle: sealed events, signed checkpoints, verifier keys, leaf hashes."""
    from audit.bundle import BundleError, write_bundle
    from audit.sealer import log_origin

    settings = _settings()
    with _database(settings) as (session, store):
        try:
            summary = write_bundle(session, store, log_origin(settings.public_url), out)
        except BundleError as exc:
            raise _fail(str(exc)) from None
    typer.echo(
        f"wrote {summary.events} events (log size {summary.size}) and "
        f"{summary.checkpoints} checkpoints of {summary.origin} to {out}"
    )
