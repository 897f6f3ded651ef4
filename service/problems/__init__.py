"""RFC 9457 problem details: the catalogue, the exception services raise, rendering."""

from service.problems.catalog import CATALOG, ProblemKind
from service.problems.errors import ProblemError

__all__ = ["CATALOG", "ProblemError", "ProblemKind"]
