"""Async SQLAlchemy engine and sessions, plus the bounded retry for transient conflicts."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import MetaData, event, text
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

T = TypeVar("T")
CommitStep = Callable[[AsyncSession], Awaitable[None]]
_BEFORE_COMMIT = "moneypath.before_commit"

# SQLSTATEs that mean "try the whole transaction again": serialization failure,
# deadlock detected, and the lock timeout we set on hot rows.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
MAX_TRANSACTION_ATTEMPTS = 5
RETRY_BASE_DELAY_S = 0.005
RETRY_MAX_DELAY_S = 0.2
# A pooled connection idle for longer than this is pinged before use; one handed back
# and forth under load is not (SQLAlchemy's pool_pre_ping would cost a round trip on
# every checkout, four per signed request).
PING_AFTER_IDLE_S = 1.0

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The single declarative base; each domain's tables live in that domain's schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def async_url(url: str) -> str:
    """Turn a libpq-style URL into the SQLAlchemy psycopg 3 async URL."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The plain postgresql:// form, for psql, pgbench and psycopg."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    raise ValueError("expected a postgresql:// URL")


def _ping_when_idle(engine: AsyncEngine, idle_s: float = PING_AFTER_IDLE_S) -> AsyncEngine:
    """Check a pooled connection before use when it sat idle: a database restart or an
    idle-connection reaper is then noticed and the connection replaced, as pool_pre_ping
    would, without a ping round trip on every busy checkout."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at < idle_s:
            return  # fresh from connect, or in use a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool replaces this connection with a new one and checks out again.
            raise DisconnectionError("pooled connection failed its ping") from error

    return engine


def create_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 15_000
) -> AsyncEngine:
    # A statement timeout bounds every query, so a stuck lock cannot hang a request forever.
    return _ping_when_idle(
        create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            connect_args={
                "connect_timeout": 5,
                "options": f"-c statement_timeout={statement_timeout_ms}",
            },
        )
    )


def create_autocommit_engine(
    url: str, *, pool_size: int = 10, statement_timeout_ms: int = 15_000
) -> AsyncEngine:
    """An engine for single-statement claims (nonces, idempotency keys) and lookups.

    Each statement commits on its own (no BEGIN/COMMIT round trips) and does not wait for
    its WAL flush (`synchronous_commit=off`). That is safe only for rows whose loss in a
    crash is harmless until a later synchronous commit, which flushes all WAL written
    before it: see idempotency.claim_at_once and Rfc9421Verifier._claim_nonce. Effects
    never use this engine.
    """
    return _ping_when_idle(
        create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": 5,
                "options": (
                    f"-c statement_timeout={statement_timeout_ms} -c synchronous_commit=off"
                ),
            },
        )
    )


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
        return sqlstate in RETRYABLE_SQLSTATES
    return False


async def run_in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = MAX_TRANSACTION_ATTEMPTS,
) -> T:
    """Run `work` in one transaction, retrying deadlocks and serialization failures.

    Retries are capped and use full jitter so that colliding transactions spread out
    instead of colliding again in lock-step. Any other error propagates at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with sessions() as session, session.begin():
                steps: list[CommitStep] = []
                session.info[_BEFORE_COMMIT] = steps
                result = await work(session)
                # From here on `at_commit` runs its step at once: the list is final.
                del session.info[_BEFORE_COMMIT]
                for step in steps:
                    await step(session)
                return result
        except DBAPIError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
            cap = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt)
            await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto
    raise RuntimeError("unreachable: the loop either returns or raises")


async def fetch_rows(
    session: AsyncSession, sql: LiteralString, params: Mapping[str, Any]
) -> list[Any]:
    """Run one hot-path statement (`%(name)s` placeholders) on the session's connection,
    in its transaction, straight through psycopg, as a server-side prepared statement.

    SQLAlchemy's statement handling costs a few hundred microseconds of CPU per statement
    (py-spy, issue 16); the ledger's per-transfer statements skip it. Errors come out as
    SQLAlchemy's DBAPIError like any other statement's, so `run_in_transaction` still
    retries deadlocks and serialization failures. Rows are named tuples.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    try:
        async with driver.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(sql, params, prepare=True)
            return await cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as error:
        raise DBAPIError.instance(sql, params, error, psycopg.Error) from error


async def at_commit(session: AsyncSession, step: CommitStep) -> None:
    """Run `step` in this transaction as late as possible: right before its COMMIT.

    For a statement that takes a global lock (the ledger's hash-chain head), so the lock
    is held for that statement and the commit only, not for what the caller still does
    after it (audit record, idempotency completion). Inside `run_in_transaction` the
    step runs after `work`, in registration order; in any other transaction it runs at
    once, so it can never be skipped.
    """
    pending: list[CommitStep] | None = session.info.get(_BEFORE_COMMIT)
    if pending is None:
        await step(session)
    else:
        pending.append(step)


async def ensure_month_partitions(session: AsyncSession, table: str, months_ahead: int) -> int:
    """Create `table`'s monthly partitions through `months_ahead`; returns how many were made.

    `table` is a schema-qualified name of a range-partitioned table we own; the SQL
    function (platform migration 0001) is idempotent, so any worker may call this.
    """
    made = (
        await session.execute(
            text("SELECT platform.ensure_month_partitions(CAST(:table AS regclass), :months)"),
            {"table": table, "months": months_ahead},
        )
    ).scalar_one()
    return int(made)
