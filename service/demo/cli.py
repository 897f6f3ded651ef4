"""``creditshare demo seed`` and ``creditshare demo client``: a registry and a client to try.

``seed`` streams the deterministic generator (plus the published examples of
DOMAIN.md) through the import pipeline, the same code path as any import: running it
again adds nothing, and a larger ``--merchants`` with the same ``--seed`` only adds
the merchants beyond the earlier run (smaller runs are prefixes of larger ones).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from auth import registry
from schemas.clients import ClientCreate
from schemas.enums import Purpose, Scope
from service.demo.generator import DEFAULT_SEED, MAX_MERCHANTS, demo_registry
from service.imports.console import (
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_REJECTED,
    CommandRun,
    Store,
    count_progress,
    fail,
    open_store,
    print_rejections,
    record_run,
    summary_table,
)
from service.imports.pipeline import ImportPipeline
from service.merchants import repository
from service.problems import ProblemError

demo_app = typer.Typer(no_args_is_help=True, help="Demo data")

DEMO_CLIENT = "demo-platform"
DEMO_SCOPES = [Scope.CREDIT_CHECK, Scope.CREDIT_DETAIL]
EXAMPLE_USCC = "91440300708461136T"
# Bigger transactions than an HTTP import: a seed has nobody waiting on its locks.
SEED_BATCH_LINES = 5000


@demo_app.command("seed")
def seed(
    merchants: Annotated[
        int,
        typer.Option(
            "--merchants",
            min=0,
            max=MAX_MERCHANTS,
            help="Merchants in the registry, the codes DOMAIN.md quotes among them",
        ),
    ] = 1000,
    seed_value: Annotated[
        int, typer.Option("--seed", help="Generator seed (same seed, same registry)")
    ] = DEFAULT_SEED,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the registry holds any merchant")
    ] = False,
) -> None:
    """Load a deterministic synthetic registry with valid codes (idempotent)."""
    err = Console(stderr=True)
    out = Console()
    with open_store(err) as store:
        if if_empty:
            with store.sessions() as session:
                if repository.any_merchant(session):
                    err.print("the registry already holds merchants: nothing to do")
                    raise typer.Exit(EXIT_OK)
        pipeline = ImportPipeline(
            store.sessions, store.keyring, actor="demo-seed", batch_lines=SEED_BATCH_LINES
        )
        try:
            with count_progress(err) as progress:
                task = progress.add_task("seeding merchants", total=merchants)

                def lines() -> Iterator[dict[str, object]]:
                    for line in demo_registry(merchants, seed_value):
                        if line["kind"] == "merchant":
                            progress.advance(task)
                        yield line

                pipeline.feed_objects(lines())
                report = pipeline.finish()
        except SQLAlchemyError as exc:
            pipeline.close()
            raise fail(
                err, f"database failed while seeding ({type(exc).__name__})", EXIT_DATABASE
            ) from None
        record_run(
            store,
            CommandRun(
                command="creditshare demo seed",
                action="import.run",
                status=200,
                details={**report.counts(), "demo_merchants": merchants, "demo_seed": seed_value},
                target_type="import",
                target_id="demo",
            ),
        )
    out.print(summary_table(report, f"Demo registry ({merchants} merchants, seed {seed_value})"))
    print_rejections(err, report, 20)
    raise typer.Exit(EXIT_OK if report.rejected_count == 0 else EXIT_REJECTED)


@demo_app.command("client")
def client(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {client_id, client_secret, ...} as JSON")
    ] = False,
) -> None:
    """Create the demo platform client, or give it a new secret, and print how to use it.

    Only a hash of a secret is stored, so an existing demo client gets a new secret
    (the previous one stops working).
    """
    err = Console(stderr=True)
    with open_store(err) as store:
        try:
            demo = _ensure_demo_client(store)
        except ProblemError as exc:
            raise fail(err, f"cannot set up the demo client ({exc.slug})") from None
        record_run(
            store,
            CommandRun(
                command="creditshare demo client",
                action="client.create" if demo.created else "client.rotate_secret",
                status=201 if demo.created else 200,
                details={
                    "name": DEMO_CLIENT,
                    "scopes": demo.scope,
                    "secret_rotated": not demo.created,
                },
                target_type="client",
                target_id=demo.client_id,
            ),
        )
        base = store.settings.public_url
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "client_id": demo.client_id,
                    "client_secret": demo.secret,
                    "created": demo.created,
                    "scope": demo.scope,
                    "token_endpoint": f"{base}/oauth/token",
                }
            )
        )
    else:
        typer.echo(f"client_id:     {demo.client_id}")
        typer.echo(f"client_secret: {demo.secret}")
        typer.echo(f"scope:         {demo.scope}")
        typer.echo("")
        typer.echo(_curl_example(base, demo.client_id, demo.secret))
        what = "created" if demo.created else "new secret for"
        err.print(
            f"{what} '{DEMO_CLIENT}': the secret is shown once, store it now.", highlight=False
        )
    if demo.status != "active":
        err.print(
            f"warning: the demo client is {demo.status}; its tokens are refused", style="yellow"
        )


@dataclass(frozen=True)
class _DemoClient:
    client_id: str
    secret: str
    created: bool
    status: str
    scope: str


def _ensure_demo_client(store: Store) -> _DemoClient:
    with store.sessions() as session, session.begin():
        existing = registry.find_by_name(session, DEMO_CLIENT)
        if existing is None:
            data = ClientCreate(
                name=DEMO_CLIENT, scopes=DEMO_SCOPES, purposes=list(Purpose), rate_plan="standard"
            )
            row, secret = registry.create_client(session, data)
        else:
            row, rotated = registry.rotate_secret(session, existing.client_id)
            secret = rotated
        if secret is None:  # cannot happen: a client_secret_basic client has a secret
            raise ProblemError("conflict")
        return _DemoClient(
            row.client_id, secret, existing is None, row.status, " ".join(row.scopes)
        )


def _curl_example(base: str, client_id: str, secret: str) -> str:
    body = json.dumps({"uscc": EXAMPLE_USCC, "purpose": "ONBOARDING"}, separators=(",", ":"))
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    return "\n".join(
        [
            "# Get an access token, then check a merchant:",
            f"CREDITSHARE_PUBLIC_URL={shlex.quote(base)}",
            f"TOKEN=$(curl -s -u {shlex.quote(f'{client_id}:{secret}')} "
            '-d grant_type=client_credentials "$CREDITSHARE_PUBLIC_URL/oauth/token" '
            f"| {extract})",
            'curl -s -X POST "$CREDITSHARE_PUBLIC_URL/v1/credit-checks" '
            '-H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" '
            f"-d {shlex.quote(body)}",
        ]
    )
