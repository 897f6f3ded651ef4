"""The exception services raise to end a request with a problem.

It carries no FastAPI type, so services and repositories stay framework-free.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from service.problems.catalog import CATALOG

MAX_ERROR_MESSAGE = 600
"""The longest validation message kept, in an ``errors`` entry: long enough for the list
of values an enumeration accepts (every record category), bounded all the same."""


class ProblemError(Exception):
    """End the request with the problem ``slug``.

    ``detail_en``/``detail_zh`` override the catalogue sentence; they must never
    contain client input. ``extra`` adds members (e.g. ``reason``);
    ``errors`` are ``(field, message)`` pairs for validation problems.
    """

    def __init__(
        self,
        slug: str,
        *,
        detail_en: str | None = None,
        detail_zh: str | None = None,
        extra: Mapping[str, object] | None = None,
        errors: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        kind = CATALOG[slug]
        super().__init__(slug)
        self.slug = slug
        self.status = status or kind.status
        self.detail_en = detail_en
        self.detail_zh = detail_zh
        self.extra = dict(extra or {})
        self.errors = list(errors)
        self.headers = dict(headers or {})
