"""``creditshare audit ...`` commands (placeholder until implemented)."""

import typer

audit_app = typer.Typer(no_args_is_help=True, help="Audit trail")
