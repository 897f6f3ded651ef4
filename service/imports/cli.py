"""``creditshare import FILE`` (placeholder until implemented)."""


def import_command() -> None:
    """Import an NDJSON file of merchants and records."""
    raise SystemExit("not implemented yet")
