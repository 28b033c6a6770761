"""Async SQLAlchemy engine and sessions, plus the bounded retry for transient conflicts."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import pq
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
from sqlalchemy.util import greenlet_spawn

from app.platform.errors import InvariantViolation

T = TypeVar("T")
CommitStep = Callable[[AsyncSession], Awaitable[None]]
# Turns a statement's own refusal (an SQL error it raises on purpose) into the exception
# its caller declared; None for any other error.
Refusal = Callable[[psycopg.Error], Exception | None]
_BEFORE_COMMIT = "moneypath.before_commit"
_WITH_COMMIT = "moneypath.with_commit"
_EXPLICIT = "moneypath.explicit_transaction"

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
    return _refuse_autocommit(
        _ping_when_idle(
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
    )


def _refuse_autocommit(engine: AsyncEngine) -> AsyncEngine:
    """Never hand out a connection of a transactional engine left in autocommit mode (an
    explicit transaction block whose clean-up failed, see `_go_explicit`): its
    statements would each commit alone. The pool replaces it with a new one."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if dbapi_connection.autocommit:
            raise DisconnectionError("pooled connection was left in autocommit mode")

    return engine


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
                queued: list[_Queued] = []
                session.info[_BEFORE_COMMIT] = steps
                session.info[_WITH_COMMIT] = queued
                try:
                    result = await work(session)
                    # From here on `at_commit` and `send_with_commit` run at once: the
                    # lists are final.
                    del session.info[_BEFORE_COMMIT]
                    del session.info[_WITH_COMMIT]
                    for step in steps:
                        await step(session)
                    if queued or _EXPLICIT in session.info:
                        await _send_and_commit(session, queued)
                except BaseException:
                    await _abandon(session)
                    raise
                return result
        except DBAPIError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
            cap = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt)
            await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto
    raise RuntimeError("unreachable: the loop either returns or raises")


async def _driver(session: AsyncSession) -> psycopg.AsyncConnection[Any]:
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    return driver


async def fetch_rows(
    session: AsyncSession, sql: LiteralString, params: Mapping[str, Any]
) -> list[Any]:
    """Run one hot-path statement (`%(name)s` placeholders) on the session's connection,
    in its transaction, straight through psycopg, as a server-side prepared statement.

    SQLAlchemy's statement handling costs a few hundred microseconds of CPU per statement
    (py-spy, issue 16); the ledger's per-transfer statements skip it. Errors come out as
    SQLAlchemy's DBAPIError like any other statement's, so `run_in_transaction` still
    retries deadlocks and serialization failures. Rows are named tuples.

    As the first statement of a `run_in_transaction` transaction, it carries the BEGIN:
    one round trip instead of two (`_go_explicit`).
    """
    driver = await _driver(session)
    if (
        _WITH_COMMIT in session.info
        and driver.pgconn.transaction_status == pq.TransactionStatus.IDLE
        and not driver.autocommit
    ):
        await _go_explicit(session, driver)
        return await _fetch(driver, sql, params, begin=True)
    return await _fetch(driver, sql, params)


async def fetch_rows_pooled(
    engine: AsyncEngine, sql: LiteralString, params: Mapping[str, Any]
) -> list[Any]:
    """`fetch_rows` of one statement on a pooled connection of an autocommit engine
    (`create_autocommit_engine`), without a Session: its Session, Connection and their
    tracing span cost about 140 µs of CPU per checkout (issue 16), more than the statement.
    The pool's checkout and checkin events run as for a session; a connection the
    statement found broken is invalidated, so the pool replaces it."""
    pooled = await engine.raw_connection()
    try:
        driver: psycopg.AsyncConnection[Any] = pooled.driver_connection  # type: ignore[assignment]
        if not driver.autocommit:
            raise InvariantViolation("db.pooled_autocommit", "expected an autocommit engine")
        return await _fetch(driver, sql, params)
    except DBAPIError as error:
        if isinstance(error.orig, psycopg.OperationalError):
            pooled.invalidate(error)
        raise
    finally:
        await greenlet_spawn(pooled.close)


async def _fetch(
    driver: psycopg.AsyncConnection[Any],
    sql: LiteralString,
    params: Mapping[str, Any],
    *,
    begin: bool = False,
) -> list[Any]:
    cursor = driver.cursor(row_factory=namedtuple_row)
    try:
        if begin:
            async with driver.pipeline():
                await _begin(driver)
                await cursor.execute(sql, params, prepare=True)
            # Leaving the pipeline sent Sync and read every result, BEGIN's and ours.
        else:
            await cursor.execute(sql, params, prepare=True)
        return await cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as error:
        raise DBAPIError.instance(sql, params, error, psycopg.Error) from error
    finally:
        await cursor.close()


async def _go_explicit(session: AsyncSession, driver: psycopg.AsyncConnection[Any]) -> None:
    """Let our own BEGIN (`_begin`) open the transaction block, so it can share a round
    trip with the statement after it.

    psycopg's implicit BEGIN is always a round trip of its own (it syncs after it, even
    in a pipeline). In autocommit mode psycopg sends none, and every statement after our
    BEGIN runs in the server's transaction block. `_send_and_commit` ends it with an
    explicit COMMIT, `_abandon` with a ROLLBACK, and both turn autocommit off again before
    the connection goes back to the pool (whose checkout also refuses one left in
    autocommit, see `create_engine`). Called outside a pipeline: there, changing
    autocommit would cost a Sync of its own.
    """
    await driver.set_autocommit(True)
    session.info[_EXPLICIT] = driver


async def _begin(driver: psycopg.AsyncConnection[Any]) -> None:
    async with driver.cursor() as begin:
        await begin.execute(b"BEGIN")


async def _abandon(session: AsyncSession) -> None:
    """After a failure: roll back an explicit transaction block, leave autocommit."""
    driver: psycopg.AsyncConnection[Any] | None = session.info.pop(_EXPLICIT, None)
    if driver is None:
        return
    try:
        if driver.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            await driver.rollback()
        await driver.set_autocommit(False)
    except psycopg.Error:
        # A broken connection: the pool replaces it (SQLAlchemy invalidates it, or the
        # checkout refuses it).
        return


@dataclass(frozen=True, slots=True)
class _Queued:
    sql: LiteralString
    params: Mapping[str, Any]
    last: bool
    refusal: Refusal | None = None


def _refused(statements: list[_Queued], error: psycopg.Error) -> Exception:
    """The first statement's own refusal of `error`, else the usual DBAPIError."""
    for statement in statements:
        if statement.refusal is not None:
            mapped = statement.refusal(error)
            if mapped is not None:
                return mapped
    sql = statements[0].sql if statements else "COMMIT"
    return DBAPIError.instance(sql, {}, error, psycopg.Error)


async def send_with_commit(
    session: AsyncSession,
    sql: LiteralString,
    params: Mapping[str, Any],
    *,
    last: bool = False,
    refusal: Refusal | None = None,
) -> None:
    """Send `sql` with this transaction's COMMIT, in the same round trip (one pipeline).

    Its result is never read: a statement queued here must refuse by raising an SQL
    error, which aborts the pipeline, so the COMMIT never runs and the transaction rolls
    back. The error comes out as what `refusal` makes of it, else as DBAPIError (like
    `fetch_rows`'s), so `run_in_transaction` still retries a deadlock. The queued statements
    run after `at_commit`'s steps, in registration order, those with `last` after the
    others: a statement that takes a global lock (the ledger's chain head) goes last, so
    the lock is held only for it and the COMMIT. Outside `run_in_transaction` it runs at
    once, so it can never be skipped.
    """
    queued: list[_Queued] | None = session.info.get(_WITH_COMMIT)
    if queued is None:
        await _send(await _driver(session), _Queued(sql, params, last, refusal))
    else:
        queued.append(_Queued(sql, params, last, refusal))


async def _send_and_commit(session: AsyncSession, queued: list[_Queued]) -> None:
    """The queued statements and COMMIT in one pipeline: one Sync, one round trip.

    COMMIT goes as a statement: psycopg's commit() syncs on its own inside a pipeline,
    and leaving the pipeline would sync once more. SQLAlchemy's commit then finds the
    connection idle and sends nothing."""
    driver = await _driver(session)
    ordered = [q for q in queued if not q.last] + [q for q in queued if q.last]
    cursor = driver.cursor()
    try:
        begin = (
            driver.pgconn.transaction_status == pq.TransactionStatus.IDLE and not driver.autocommit
        )
        if begin:
            await _go_explicit(session, driver)
        async with driver.pipeline():
            if begin:
                await _begin(driver)
            for statement in ordered:
                await cursor.execute(statement.sql, statement.params, prepare=True)
            await cursor.execute(b"COMMIT")
        if session.info.pop(_EXPLICIT, None) is not None:
            await driver.set_autocommit(False)
    except psycopg.Error as error:
        raise _refused(ordered, error) from error
    finally:
        await cursor.close()


async def _send(driver: psycopg.AsyncConnection[Any], statement: _Queued) -> None:
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(statement.sql, statement.params, prepare=True)
    except psycopg.Error as error:
        raise _refused([statement], error) from error


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
