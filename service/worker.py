"""``creditshare worker``: background jobs for several API nodes (placeholder)."""


def run_worker() -> None:
    """Run the background worker until interrupted."""
    raise SystemExit("not implemented yet")
