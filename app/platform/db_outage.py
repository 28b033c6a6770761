"""A database outage answers 503 `service_unavailable` with Retry-After, never 500.

PostgreSQL being down (killed, restarting, failing over, out of connections) is not a bug
in the request: the client should wait and retry with the same Idempotency-Key. Nothing was
committed, because the transaction could not reach the database, and a retry with the same
key is safe once the database is back (the key was never completed).

`is_database_unavailable` decides from the error alone; the ASGI apps register
`database_error_handler` for SQLAlchemy's errors so it runs for every route.
"""

from __future__ import annotations

import structlog
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import Request
from starlette.responses import Response

from app.platform.errors import DependencyUnavailableError
from app.platform.metrics import record_dependency_unavailable
from app.platform.web import problem_response, unhandled_error_handler

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 2
# SQLSTATE classes that mean "the server is not there or not taking work", not "your SQL
# is wrong": 08 connection exceptions, 57P01-57P03 shutdown/crash/startup, 53300 too
# many connections.
_UNAVAILABLE_SQLSTATE_PREFIXES = ("08",)
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


class DatabaseUnavailableError(DependencyUnavailableError):
    """The database could not be reached; retry after `Retry-After` seconds."""

    code = "service_unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str = "the database is unavailable; retry later") -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(RETRY_AFTER_S)


def is_database_unavailable(error: BaseException) -> bool:
    """True when `error` means the database is down or unreachable, not that a query failed."""
    if isinstance(error, PoolTimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is None:
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all
        # (refused, reset, timed out) or the server vanished mid-statement.
        return type(original).__name__ in {"OperationalError", "InterfaceError"}
    return sqlstate.startswith(_UNAVAILABLE_SQLSTATE_PREFIXES) or sqlstate in _UNAVAILABLE_SQLSTATES


async def database_error_handler(request: Request, exc: Exception) -> Response:
    """503 for an outage; anything else from SQLAlchemy is still an internal error."""
    if isinstance(exc, SQLAlchemyError) and is_database_unavailable(exc):
        record_dependency_unavailable("db")
        log.warning("database_unavailable", error_type=type(exc).__name__)
        return problem_response(DatabaseUnavailableError(), request)
    return await unhandled_error_handler(request, exc)
