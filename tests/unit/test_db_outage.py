"""Which database errors count as an outage (503) and which stay internal errors (500)."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.platform.db_outage import DatabaseUnavailableError, is_database_unavailable


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("driver error")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["08006", "08001", "57P01", "57P03", "53300"])
def test_connection_and_shutdown_states_are_an_outage_when_raised(sqlstate: str) -> None:
    error = OperationalError("SELECT 1", {}, _DriverError(sqlstate))
    assert is_database_unavailable(error)


@pytest.mark.parametrize("sqlstate", ["42601", "23505", "40001", "57014"])
def test_query_errors_are_not_an_outage_when_raised(sqlstate: str) -> None:
    error = ProgrammingError("SELECT", {}, _DriverError(sqlstate))
    assert not is_database_unavailable(error)


def test_pool_timeout_and_invalidated_connections_are_an_outage_when_raised() -> None:
    invalidated = DBAPIError("SELECT 1", {}, _DriverError("XX000"), connection_invalidated=True)
    assert is_database_unavailable(PoolTimeoutError("pool exhausted"))
    assert is_database_unavailable(invalidated)
    assert not is_database_unavailable(ValueError("not a database error"))


def test_refused_connection_without_sqlstate_is_an_outage_when_raised() -> None:
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert is_database_unavailable(OperationalError("connect", {}, refused))


def test_outage_problem_says_service_unavailable_with_retry_after_when_raised() -> None:
    error = DatabaseUnavailableError()
    assert (error.status, error.code) == (503, "service_unavailable")
    assert int(error.headers["Retry-After"]) > 0
