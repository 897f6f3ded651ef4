"""``creditshare worker``: background jobs for several API nodes (today: audit sealing).

Every worker competes for the ``audit-sequencer`` lease in the database; the
holder seals, the others stand by and take over within the lease time (10 s)
if it stops renewing. API nodes with ``CREDITSHARE_EMBEDDED_SEQUENCER=false``
leave sealing to the workers; with it on they compete for the same lease, so
mixing both is safe. SIGTERM or SIGINT stops the worker at a batch boundary
and releases the lease at once. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

log = logging.getLogger("creditshare.worker")


def run_worker() -> None:
    """Run the background worker (audit sealing, leader-elected) until SIGTERM or SIGINT."""
    from audit.sealer import Sequencer, SequencerLoop, log_origin
    from service.db.migrate import SchemaMismatch, ensure_current
    from service.logging import configure_logging
    from service.runtime import build_runtime
    from service.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: unsafe or invalid settings: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    runtime = build_runtime(settings)
    try:
        try:
            ensure_current(runtime.engine)
        except SchemaMismatch as exc:
            log.error("cannot start", extra={"reason": str(exc)})
            raise SystemExit(2) from None
        runtime.key_store.ensure()
        sequencer = Sequencer(
            runtime.sessionmaker, runtime.key_store, log_origin(settings.public_url)
        )
        loop = SequencerLoop(sequencer, settings.audit_seal_interval)

        def request_stop(signum: int, _frame: FrameType | None) -> None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            loop.stop()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        log.info("worker started", extra={"holder": sequencer.holder})
        loop.run()
    finally:
        runtime.close()
    log.info("worker stopped")
