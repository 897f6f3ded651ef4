"""Response bodies assembled from already-serialised checks (no re-encoding)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson

from service.credit_checks.batch import ItemResult

ProblemRenderer = Callable[[str, dict[str, object] | None], bytes]
"""``(slug, extra members) -> problem JSON bytes`` for one batch item."""


def batch_body(results: Sequence[ItemResult], problem: ProblemRenderer) -> bytes:
    parts: list[bytes] = []
    for result in results:
        check = result.body if result.body is not None else b"null"
        detail = (
            b"null" if result.problem is None else problem(result.problem, result.problem_extra)
        )
        parts.append(
            b'{"uscc":%b,"status":%d,"check":%b,"problem":%b}'
            % (orjson.dumps(result.uscc), result.status, check, detail)
        )
    return b'{"results":[' + b",".join(parts) + b"]}"


def page_body(items: Sequence[bytes], next_cursor: str | None) -> bytes:
    return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}"
