"""ASGI entry point for servers with several worker processes: ``service.asgi:app``."""

import gc

from service.app import create_app

app = create_app()

# Everything built so far (modules, the app and its routes, SQLAlchemy and pydantic
# metadata) lives as long as the process: out of the collector's reach, a full collection
# walks only what requests create. Measured with `make bench` on SQLite: p99 57-74 ms
# instead of 98-106 ms at the same throughput (bench/RESULTS.md). Only here, in the served
# process: tests build many apps in one process and must be able to collect them.
gc.collect()
gc.freeze()
