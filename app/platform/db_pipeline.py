"""Statements sent straight through psycopg on the hot path, and the COMMIT pipeline.

SQLAlchemy's statement handling costs a few hundred microseconds of CPU per statement
(py-spy, issue 16). The per-request statements of a signed write skip it: a transaction's
first statement carries its BEGIN (`fetch_rows`), statements whose result nobody reads
before the COMMIT go with it in one pipeline (`send_with_commit`), and a single autocommit
statement runs on a pooled connection without a Session (`fetch_rows_pooled`).
`db.run_in_transaction` drives the commit; everything here is re-exported by `db`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import pq
from psycopg.rows import namedtuple_row
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.util import greenlet_spawn

from app.platform import commit_groups, db_wire, tracing
from app.platform.errors import InvariantViolation

CommitStep = Callable[[AsyncSession], Awaitable[None]]
# Turns a statement's own refusal (an SQL error it raises on purpose) into the exception
# its caller declared; None for any other error.
Refusal = Callable[[psycopg.Error], Exception | None]
_BEFORE_COMMIT = "moneypath.before_commit"
_WITH_COMMIT = "moneypath.with_commit"
_EXPLICIT = "moneypath.explicit_transaction"
# session.info key: set once the session's transaction has a connection (any statement ran).
_CONNECTED = "moneypath.connected"


@event.listens_for(Session, "after_begin")
def _connected(session: Session, transaction: Any, connection: Any) -> None:
    session.info[_CONNECTED] = True


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


async def _checkout(engine: AsyncEngine) -> Any:
    """A pooled connection for the statements here. The pool's raw checkout raises the
    driver's own error when the server cannot be reached (SQLAlchemy wraps errors on its
    Connection only), so it is wrapped here like every other database error: an outage
    then answers 503 `service_unavailable` (db_outage), never 500."""
    try:
        return await engine.raw_connection()
    except psycopg.Error as error:
        raise DBAPIError.instance(
            None, None, error, psycopg.Error, connection_invalidated=True
        ) from error


async def fetch_rows_pooled(
    engine: AsyncEngine, sql: LiteralString, params: Mapping[str, Any]
) -> list[Any]:
    """`fetch_rows` of one statement on a pooled connection of an autocommit engine
    (`create_autocommit_engine`), without a Session: its Session, Connection and their
    tracing span cost about 140 µs of CPU per checkout (issue 16), more than the statement.
    The statement goes in one write (`db_wire.fetch`): its parameters are text, int,
    bool or None, its columns boolean, integer or text. The pool's checkout and checkin
    events run as for a session; a connection found broken, or left mid-exchange, is
    invalidated, so the pool replaces it."""
    pooled = await _checkout(engine)
    usable = False
    try:
        driver: psycopg.AsyncConnection[Any] = pooled.driver_connection
        if not driver.autocommit:
            raise InvariantViolation("db.pooled_autocommit", "expected an autocommit engine")
        try:
            rows = await db_wire.fetch(driver, sql, params)
        except psycopg.Error as error:
            usable = not isinstance(error, psycopg.OperationalError) and (
                driver.pgconn.pipeline_status == pq.PipelineStatus.OFF
            )
            raise DBAPIError.instance(sql, params, error, psycopg.Error) from error
        usable = True
        return rows
    finally:
        if not usable:
            # Closing the broken connection awaits the driver: inside greenlet_spawn, as
            # SQLAlchemy's pool requires (else it logs MissingGreenlet and leaks it).
            await greenlet_spawn(pooled.invalidate)
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
    connection idle and sends nothing. A transaction that ran no statement before (a
    signed transfer: every statement of its effect is queued) takes a pooled connection
    for the pipeline alone, without the Session's Connection (`_commit_pooled`)."""
    ordered = [q for q in queued if not q.last] + [q for q in queued if q.last]
    engine = session.bind
    if _CONNECTED not in session.info and isinstance(engine, AsyncEngine) and ordered:
        await _commit_pooled(engine, ordered)
        return
    driver = await _driver(session)
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


async def _commit_pooled(engine: AsyncEngine, ordered: list[_Queued]) -> None:
    """BEGIN, `ordered` and COMMIT on a pooled connection, in one write (`db_wire`),
    grouped with the transactions other requests of this process queued meanwhile
    (`commit_groups`). A refusal comes out as the statement's own (`_refused`)."""
    groups = commit_groups.groups_for(engine, functools.partial(_commit_on_pooled, engine))
    first = [(q.sql, q.params) for q in ordered if not q.last]
    last = [(q.sql, q.params) for q in ordered if q.last]
    try:
        await groups.commit(first, last)
    except psycopg.Error as error:
        raise _refused(ordered, error) from error


async def _commit_on_pooled(
    engine: AsyncEngine, statements: Sequence[commit_groups.Statement], members: int
) -> None:
    """One transaction on a pooled connection (the `commit_groups.Committer`).

    A Session's Connection and the tracing span of its checkout cost more CPU than the
    pipeline itself (issue 16); this pipeline gets a span of its own instead. A refused
    transaction block is rolled back and its error raised; a connection whose exchange
    broke off (or that cannot be rolled back) is invalidated, so the pool never hands it
    out again, and CommitBrokenError says the outcome is unknown."""
    pooled = await _checkout(engine)
    driver: psycopg.AsyncConnection[Any] = pooled.driver_connection
    attributes: dict[str, str | int | bool] = {
        "db.system": "postgresql",
        "db.statements": len(statements) + 2,
        "db.transactions": members,
    }
    usable = False
    try:
        with tracing.span("db.commit_pipeline", **attributes):
            try:
                await db_wire.commit(driver, statements)
                usable = True
            except psycopg.Error as error:
                usable = await _reset(driver)
                if not usable:
                    raise commit_groups.CommitBrokenError(error) from error
                raise
    finally:
        if not usable:
            await greenlet_spawn(pooled.invalidate)
        await greenlet_spawn(pooled.close)


async def _reset(driver: psycopg.AsyncConnection[Any]) -> bool:
    """Roll back a block left open; False if the connection is unusable."""
    if driver.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        return False  # the exchange broke off midway: its state is unknown
    try:
        if driver.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            await db_wire.rollback(driver)
    except psycopg.Error:
        return False
    return driver.pgconn.transaction_status == pq.TransactionStatus.IDLE


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
