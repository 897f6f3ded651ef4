"""The framework ceiling for the check benchmark: a bare FastAPI POST endpoint that returns
a pre-serialised JSON body of the same size as a credit check (``BENCH_BODY_SIZE``)."""

from __future__ import annotations

import os

from fastapi import FastAPI, Response

SIZE = int(os.environ.get("BENCH_BODY_SIZE", "1024"))
BODY = b'{"pad":"' + b"x" * max(0, SIZE - 10) + b'"}'

app = FastAPI()


@app.post("/bare")
async def bare() -> Response:
    return Response(BODY, media_type="application/json")
