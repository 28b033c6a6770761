"""The two engines of app.platform.db against a real PostgreSQL: idle connections are
checked before use, and the autocommit engine commits each statement without a WAL-flush
wait while the ordinary engine keeps synchronous commits."""

from __future__ import annotations

import asyncio

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.entrypoints.devstack import Stack
from app.platform import db


def _terminate(stack: Stack, backend_pid: int) -> None:
    url = db.libpq_url(stack.database_url or "")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (backend_pid,))


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one())


def test_idle_connection_is_replaced_when_its_backend_was_terminated(stack: Stack) -> None:
    async def scenario() -> tuple[int, int]:
        engine = db.create_engine(stack.database_url or "", pool_size=1)
        try:
            first = await _backend_pid(engine)
            _terminate(stack, first)
            await asyncio.sleep(db.PING_AFTER_IDLE_S + 0.2)
            # The pooled connection is dead; the checkout ping must notice and reconnect.
            return first, await _backend_pid(engine)
        finally:
            await engine.dispose()

    first, second = asyncio.run(scenario())
    assert second != first


def test_busy_connection_is_reused_without_a_ping_when_it_was_just_returned(
    stack: Stack,
) -> None:
    async def scenario() -> tuple[int, int]:
        engine = db.create_engine(stack.database_url or "", pool_size=1)
        try:
            return await _backend_pid(engine), await _backend_pid(engine)
        finally:
            await engine.dispose()

    first, second = asyncio.run(scenario())
    assert first == second


def test_autocommit_engine_commits_each_statement_without_waiting_for_the_flush(
    stack: Stack,
) -> None:
    async def scenario() -> tuple[str, str, str]:
        fast = db.create_autocommit_engine(stack.database_url or "", pool_size=1)
        safe = db.create_engine(stack.database_url or "", pool_size=1)
        try:
            async with db.session_factory(fast)() as session:
                mode = (await session.execute(text("SHOW synchronous_commit"))).scalar_one()
                # No BEGIN was sent: the session's connection is outside any transaction.
                in_block = (
                    await session.execute(text("SELECT now() = statement_timestamp()"))
                ).scalar_one()
            async with db.session_factory(safe)() as session, session.begin():
                effect_mode = (await session.execute(text("SHOW synchronous_commit"))).scalar_one()
            return str(mode), str(in_block), str(effect_mode)
        finally:
            await fast.dispose()
            await safe.dispose()

    mode, single_statement, effect_mode = asyncio.run(scenario())
    assert mode == "off"
    assert single_statement == "True"
    assert effect_mode == "on"


def test_at_commit_step_runs_after_the_work_when_inside_run_in_transaction(
    stack: Stack,
) -> None:
    order: list[str] = []

    async def scenario() -> None:
        engine = db.create_engine(stack.database_url or "", pool_size=1)
        sessions = db.session_factory(engine)

        async def last(session: AsyncSession) -> None:
            order.append("step")

        async def work(session: AsyncSession) -> None:
            await db.at_commit(session, last)
            order.append("work done")

        try:
            await db.run_in_transaction(sessions, work)
            # Outside run_in_transaction nobody would run it later: it runs at once.
            async with sessions() as session, session.begin():
                await db.at_commit(session, last)
                order.append("plain done")
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    assert order == ["work done", "step", "step", "plain done"]
