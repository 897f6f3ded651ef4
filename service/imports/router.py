"""``POST /v1/admin/imports``: NDJSON merchants and records, streamed into the pipeline.

The route is ``async`` so that it can read the body as a stream; every database step
runs in the thread pool, one batch at a time, so neither the event loop nor memory
carries the whole upload. The request middleware caps the body at
``CREDITSHARE_MAX_IMPORT_BYTES``. Batches already stored stay stored if the upload
breaks off (each batch is its own transaction, and re-importing is idempotent).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from audit.context import RequestAudit
from auth.dependencies import AdminDataAccess
from schemas.imports import ImportResult
from service.imports.lines import LineSplitter, RawLine
from service.imports.pipeline import BATCH_LINES, ImportPipeline
from service.openapi_docs import STANDARD, problems
from service.problems import ProblemError

router = APIRouter(prefix="/v1/admin", tags=["administration"], responses=problems(*STANDARD))
NDJSON = "application/x-ndjson"

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": 'One JSON object per line: {"kind": "merchant", ...} or {"kind": "record", ...}',
        "content": {NDJSON: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def _is_ndjson(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == NDJSON


@router.post(
    "/imports",
    response_model=ImportResult,
    name="imports.run",
    responses=problems(415),
    openapi_extra=_BODY_DOC,
)
async def run_import(
    request: Request,
    principal: AdminDataAccess,
    dry_run: Annotated[bool, Query(description="Validate and count only; write nothing")] = False,
) -> ImportResult:
    """Upsert merchants (by ``uscc``) and records (by ``source`` and ``source_record_id``).

    Bad lines are reported by line number with field errors and never stop the good ones.
    """
    ctx: RequestAudit = request.state.audit
    ctx.action, ctx.target_type = "import.run", "import"
    if not _is_ndjson(request.headers.get("content-type")):
        raise ProblemError("unsupported-media-type")
    pipeline = ImportPipeline(
        request.app.state.sessionmaker,
        request.app.state.keyring,
        actor=principal.client_id,
        dry_run=dry_run,
    )
    splitter = LineSplitter()
    pending: list[RawLine] = []
    try:
        async for chunk in request.stream():
            pending.extend(splitter.feed(chunk))
            if len(pending) >= BATCH_LINES:
                await run_in_threadpool(pipeline.process, pending)
                pending = []
                ctx.details.update(pipeline.report.counts())
        pending.extend(splitter.close())
        await run_in_threadpool(pipeline.process, pending)
        report = await run_in_threadpool(pipeline.finish)
    finally:
        pipeline.close()
        ctx.details.update(pipeline.report.counts())
    # The data went in batch by batch, each its own transaction, so there is no one
    # transaction to share with the event: the request middleware writes it (counts
    # only) before the response starts, and answers 503 audit-unavailable if it cannot.
    return report.to_result()
