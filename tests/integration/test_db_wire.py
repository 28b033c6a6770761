"""`db_wire.commit` against a real PostgreSQL (issue 16): a transaction's statements go in
one write and commit together, a failing statement keeps nothing, statements the server
dropped are prepared again, and a parameter that is not text is refused before anything
is sent."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import pq

from app.entrypoints.devstack import Stack
from app.platform import db_wire
from app.platform.errors import InvariantViolation

T = TypeVar("T")
TABLE = "public.wire_probe"
INSERT = "INSERT INTO public.wire_probe (tag, n) VALUES (%(tag)s, CAST(%(n)s AS integer))"


def _run(stack: Stack, scenario: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
    assert stack.database_url is not None
    url = stack.database_url

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(url) as driver:
            await driver.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (tag text PRIMARY KEY, n int)"
            )
            await driver.commit()
            return await scenario(driver)

    return asyncio.run(main())


async def _count(driver: psycopg.AsyncConnection[Any], prefix: str) -> int:
    cursor = await driver.execute(
        f"SELECT count(*) FROM {TABLE} WHERE tag LIKE %s", (prefix + "%",)
    )
    row = await cursor.fetchone()
    await driver.rollback()
    assert row is not None
    return int(row[0])


def test_statements_commit_together_when_sent_in_one_write(stack: Stack) -> None:
    tag = secrets.token_hex(6)

    async def scenario(driver: psycopg.AsyncConnection[Any]) -> int:
        await db_wire.commit(
            driver,
            [(INSERT, {"tag": tag + "-a", "n": 1}), (INSERT, {"tag": tag + "-b", "n": None})],
        )
        assert driver.pgconn.transaction_status == pq.TransactionStatus.IDLE
        return await _count(driver, tag)

    assert _run(stack, scenario) == 2


def test_nothing_is_kept_when_a_statement_of_the_transaction_fails(stack: Stack) -> None:
    tag = secrets.token_hex(6)

    async def scenario(driver: psycopg.AsyncConnection[Any]) -> int:
        with pytest.raises(psycopg.errors.UniqueViolation):
            await db_wire.commit(
                driver, [(INSERT, {"tag": tag, "n": 1}), (INSERT, {"tag": tag, "n": 2})]
            )
        assert driver.pgconn.pipeline_status == pq.PipelineStatus.OFF
        await driver.rollback()
        return await _count(driver, tag)

    assert _run(stack, scenario) == 0


def test_statements_are_prepared_again_when_the_server_dropped_them(stack: Stack) -> None:
    tag = secrets.token_hex(6)
    other = "INSERT INTO public.wire_probe (tag) VALUES (%(tag)s)"

    async def scenario(driver: psycopg.AsyncConnection[Any]) -> int:
        await db_wire.commit(driver, [(INSERT, {"tag": tag + "-1", "n": 1})])
        # What psycopg's rollback sends when it had statements of its own prepared.
        await driver.execute("DEALLOCATE ALL")
        await driver.commit()
        # `other` is new to this connection: prepared in the same write as the dropped one.
        await db_wire.commit(
            driver, [(other, {"tag": tag + "-2"}), (INSERT, {"tag": tag + "-3", "n": 3})]
        )
        await db_wire.commit(
            driver, [(other, {"tag": tag + "-4"}), (INSERT, {"tag": tag + "-5", "n": 5})]
        )
        return await _count(driver, tag)

    assert _run(stack, scenario) == 5


def test_a_parameter_that_is_not_text_is_refused_before_anything_is_sent(stack: Stack) -> None:
    async def scenario(driver: psycopg.AsyncConnection[Any]) -> None:
        with pytest.raises(InvariantViolation):
            await db_wire.commit(driver, [(INSERT, {"tag": ["a", "b"], "n": 1})])
        assert driver.pgconn.pipeline_status == pq.PipelineStatus.OFF
        assert driver.pgconn.transaction_status == pq.TransactionStatus.IDLE

    _run(stack, scenario)


def test_fetch_returns_named_rows_and_commits_alone_when_the_connection_autocommits(
    stack: Stack,
) -> None:
    tag = secrets.token_hex(6)
    sql = (
        "INSERT INTO public.wire_probe (tag, n) VALUES (%(tag)s, CAST(%(n)s AS integer))"
        " RETURNING tag, n, n > %(floor)s AS above, NULL::text AS nothing"
    )

    async def scenario(driver: psycopg.AsyncConnection[Any]) -> tuple[list[Any], int]:
        await driver.set_autocommit(True)
        rows = await db_wire.fetch(driver, sql, {"tag": tag, "n": 7, "floor": 5})
        with pytest.raises(psycopg.errors.UniqueViolation):
            await db_wire.fetch(driver, sql, {"tag": tag, "n": 8, "floor": 5})
        assert driver.pgconn.transaction_status == pq.TransactionStatus.IDLE
        return rows, await _count(driver, tag)

    rows, kept = _run(stack, scenario)
    assert [(r.tag, r.n, r.above, r.nothing) for r in rows] == [(tag, 7, True, None)]
    assert kept == 1


def test_a_refused_commit_keeps_the_prepared_statements_when_rolled_back_on_the_wire(
    stack: Stack,
) -> None:
    tag = secrets.token_hex(6)
    ours = "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'mp\\_%'"

    async def scenario(driver: psycopg.AsyncConnection[Any]) -> tuple[int, int]:
        # psycopg prepares a statement of its own (its rollback would DEALLOCATE ALL).
        await driver.execute("SELECT 1", prepare=True)
        await driver.commit()
        await db_wire.commit(driver, [(INSERT, {"tag": tag, "n": 1})])
        with pytest.raises(psycopg.errors.UniqueViolation):
            await db_wire.commit(driver, [(INSERT, {"tag": tag, "n": 2})])
        await db_wire.rollback(driver)
        assert driver.pgconn.transaction_status == pq.TransactionStatus.IDLE
        cursor = await driver.execute(ours)
        row = await cursor.fetchone()
        await driver.commit()
        assert row is not None
        return int(row[0]), await _count(driver, tag)

    prepared, kept = _run(stack, scenario)
    assert prepared == 1
    assert kept == 1


def test_read_sessions_leave_the_prepared_statements_when_their_connection_is_reused(
    stack: Stack,
) -> None:
    """A read session that runs one query many times and ends (SQLAlchemy rolls the
    connection back on check-in) must not drop db_wire's statements: psycopg sends
    DEALLOCATE ALL with that ROLLBACK once it has prepared anything itself, which our
    engines keep it from doing on its own (db.NO_AUTOMATIC_PREPARE)."""
    from sqlalchemy import text
    from sqlalchemy.util import greenlet_spawn

    from app.platform.db import create_engine

    assert stack.database_url is not None
    url = stack.database_url
    tag = secrets.token_hex(6)

    async def main() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as setup:
            await setup.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (tag text PRIMARY KEY, n int)")
        engine = create_engine(url, pool_size=1)
        try:
            pooled = await engine.raw_connection()
            driver: psycopg.AsyncConnection[Any] = pooled.driver_connection
            await db_wire.commit(driver, [(INSERT, {"tag": tag, "n": 1})])
            backend = driver.pgconn.backend_pid
            await greenlet_spawn(pooled.close)  # the pool's check-in awaits the driver
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                assert raw.driver_connection.pgconn.backend_pid == backend
                for _ in range(8):  # beyond psycopg's default threshold of 5
                    await connection.execute(
                        text(f"SELECT n FROM {TABLE} WHERE tag = :t"), {"t": tag}
                    )
            # The connection went back to the pool and was rolled back there.
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT name FROM pg_prepared_statements WHERE name LIKE 'mp%' ")
                )
                return [str(row[0]) for row in rows]
        finally:
            await engine.dispose()

    assert asyncio.run(main()) != []
