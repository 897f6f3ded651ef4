"""``creditshare demo ...`` commands (placeholder until implemented)."""

import typer

demo_app = typer.Typer(no_args_is_help=True, help="Demo data")
