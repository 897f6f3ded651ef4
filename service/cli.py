"""The ``creditshare`` command (also ``python -m service.cli``).

Every command reads the same ``CREDITSHARE_*`` settings as the server.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.audit_cli import audit_app
from service.demo.cli import demo_app
from service.imports.cli import import_command
from service.settings import Settings, SettingsError, load_settings
from service.worker import run_worker

if TYPE_CHECKING:
    from pydantic import ValidationError

    from service.problems import ProblemError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="creditshare: credit information sharing API"
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema")
clients_app = typer.Typer(no_args_is_help=True, help="OAuth clients")
keys_app = typer.Typer(no_args_is_help=True, help="Signing keys")
openapi_app = typer.Typer(no_args_is_help=True, help="OpenAPI document")
app.add_typer(db_app, name="db")
app.add_typer(demo_app, name="demo")
app.add_typer(clients_app, name="clients")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(openapi_app, name="openapi")
app.command("import")(import_command)
app.command("worker")(run_worker)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(f"error: unsafe or invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
) -> None:
    """Serve the API with uvicorn."""
    import uvicorn

    settings = _settings()
    from service.db.engine import make_engine
    from service.db.migrate import SchemaMismatch, ensure_current

    engine = make_engine(settings.effective_database_url, pool_size=1)
    try:
        ensure_current(engine)
    except SchemaMismatch as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    if workers > 1 and not settings.redis_url:
        typer.echo(
            f"warning: {workers} worker processes without CREDITSHARE_REDIS_URL: each process "
            "keeps its own rate-limit counters (a client gets each plan once per process), "
            "and a revoked token reaches the other processes within a second through the "
            "database, not at once. Set CREDITSHARE_REDIS_URL to share them.",
            err=True,
        )
    uvicorn.run(
        "service.asgi:app",
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=20,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema (idempotent)."""
    from service.db.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    typer.echo("database is up to date")


@clients_app.command("create")
def clients_create(
    name: Annotated[str, typer.Option("--name", help="Client name")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes", help='Space- or comma-separated, e.g. "credit:check credit:detail"'
        ),
    ],
    purposes: Annotated[
        str | None,
        typer.Option(
            "--purposes",
            help="Space-separated purposes (default: every purpose, for a credit:check client)",
        ),
    ] = None,
    rate_plan: Annotated[str, typer.Option("--rate-plan", help="Rate plan name")] = "standard",
    platform_uscc: Annotated[
        str | None, typer.Option("--platform-uscc", help="The platform's own USCC")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {client_id, client_secret} as JSON")
    ] = False,
) -> None:
    """Register a client_secret_basic client and print its id and secret (shown once)."""
    from pydantic import ValidationError
    from rich.console import Console
    from sqlalchemy import select

    from auth.registry import create_client
    from schemas.clients import ClientCreate
    from service.imports.console import CommandRun, open_store, record_run_in
    from service.models import RatePlanRow
    from service.problems import ProblemError

    try:
        data = ClientCreate(
            name=name,
            scopes=scopes.replace(",", " ").split(),
            purposes=None if purposes is None else purposes.replace(",", " ").split(),
            rate_plan=rate_plan,
            platform_uscc=platform_uscc,
        )
    except ValidationError as exc:
        raise _fail(_invalid_options(exc)) from None
    with open_store(Console(stderr=True)) as store:
        try:
            with store.sessions() as session, session.begin():
                row, secret = create_client(session, data)
                client_id = row.client_id
                record_run_in(
                    session,
                    CommandRun(
                        command="creditshare clients create",
                        action="client.create",
                        status=201,
                        details={
                            "name": name,
                            "scopes": sorted(data.scopes),
                            "rate_plan": rate_plan,
                        },
                        target_type="client",
                        target_id=client_id,
                    ),
                )
        except ProblemError as exc:
            detail = "; ".join(f"{f}: {m}" for f, m in exc.errors) or _problem_text(exc)
            if any(field == "rate_plan" for field, _ in exc.errors):
                with store.sessions() as session:
                    names = session.scalars(select(RatePlanRow.name).order_by(RatePlanRow.name))
                    detail += f" (plans: {', '.join(names)})"
            raise _fail(detail) from None
    if as_json:
        typer.echo(json.dumps({"client_id": client_id, "client_secret": secret}))
    else:
        typer.echo(f"client_id:     {client_id}")
        typer.echo(f"client_secret: {secret}")
        typer.echo("The secret is shown once; store it now.", err=True)


def _invalid_options(exc: ValidationError) -> str:
    """Which option is wrong and what it takes (pydantic's message: the allowed values of
    a scope or purpose, the bounds of a length), one line per error."""
    option = {"platform_uscc": "platform-uscc", "rate_plan": "rate-plan"}
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "value"
        lines.append(f"--{option.get(field, field)}: {error['msg']}")
    return "invalid option\n  " + "\n  ".join(lines)


def _problem_text(exc: ProblemError) -> str:
    reason = (exc.extra or {}).get("reason")
    return exc.slug if reason is None else f"{exc.slug} ({reason})"


@keys_app.command("rotate")
def keys_rotate(
    use: Annotated[
        str, typer.Option(help="token (access tokens, receipts) or audit (checkpoints)")
    ] = "token",
) -> None:
    """Create a new signing key; the old one stays in the JWKS for the overlap period."""
    from rich.console import Console

    from auth.keys import AUDIT_USE, TOKEN_USE, KeyStore
    from service.imports.console import CommandRun, open_store, record_run

    if use not in (TOKEN_USE, AUDIT_USE):
        raise _fail("--use must be token or audit")
    with open_store(Console(stderr=True)) as store:
        overlap = store.settings.key_overlap_seconds
        keys = KeyStore(store.sessions, store.keyring, overlap_seconds=overlap)
        keys.ensure()
        kid = keys.rotate(use)
        record_run(
            store,
            CommandRun(
                command="creditshare keys rotate",
                action="keys.rotate",
                status=200,
                details={"use": use, "overlap_seconds": overlap},
                target_type="signing_key",
                target_id=kid,
            ),
        )
    typer.echo(f"new {use} key: {kid} (previous key published for {overlap} s more)")


@openapi_app.command("export")
def openapi_export(
    out: Annotated[Path, typer.Option(help="Where to write the document")] = Path(
        "openapi/openapi.json"
    ),
) -> None:
    """Write the OpenAPI document the app serves."""
    from service.openapi_export import render_openapi

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_openapi())
    typer.echo(f"wrote {out}")


def main() -> None:
    """The ``creditshare`` command. What an operator can fix (a database that cannot be
    reached or is not migrated, a master key that does not open the stored keys) ends with
    one line on stderr and exit status 2 (the setup is unusable, as every command says it;
    1 keeps its meaning: rejected lines, a failed verification), not a traceback."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from service.crypto import DecryptionError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except DBAPIError as exc:
        reason = (
            str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        )
        unreachable = isinstance(exc, OperationalError) and exc.connection_invalidated
        if unreachable or "connect" in reason.lower():
            hint = "check CREDITSHARE_DATABASE_URL and that the database server is up"
        else:
            hint = "check CREDITSHARE_DATABASE_URL, and run `creditshare db upgrade`"
        typer.echo(f"error: the database could not be used ({reason}); {hint}", err=True)
        sys.exit(2)
    except DecryptionError:
        typer.echo(
            "error: CREDITSHARE_MASTER_KEY does not decrypt this database's keys "
            "(it is not the key the database was created with)",
            err=True,
        )
        sys.exit(2)


if __name__ == "__main__":
    main()
