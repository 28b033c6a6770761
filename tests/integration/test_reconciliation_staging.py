"""A run's staging (on the real PostgreSQL): its temporary tables get the run's memory
(temp_buffers) when the session has none yet, and that connection is then closed with
the transaction instead of going back to the pool with the memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.entrypoints.devstack import Stack
from app.reconciliation import staging
from tests.support.staged import Database

pytestmark = pytest.mark.integration
FILE = (
    b"settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency\n"
    b"2026-12-01,1,CAPTURE,ch_1,cap_1,1050,0,1050,EUR\n"
)


@pytest.fixture
def database(stack: Stack) -> Iterator[Database]:
    # Its own engine (one pooled connection), so no other test's temporary tables are in it.
    with Database.of(stack) as database:
        yield database


async def _backend(session: AsyncSession) -> int:
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _setting(session: AsyncSession) -> str:
    return str((await session.execute(text("SHOW temp_buffers"))).scalar_one())


def test_temporary_tables_get_the_run_memory_when_the_session_has_none_yet(
    database: Database,
) -> None:
    async def run(session: AsyncSession) -> tuple[int, str]:
        lines = await staging.stage_lines(session, "acme", FILE, work_mem_mb=64)
        return lines, await _setting(session)

    assert database.rolled_back(run) == (1, "64MB")


def test_connection_is_closed_after_the_run_when_it_took_the_memory(database: Database) -> None:
    async def run(session: AsyncSession) -> int:
        await staging.stage_lines(session, "acme", FILE, work_mem_mb=64)
        return await _backend(session)

    ran_in = database.rolled_back(run)
    after = database.rolled_back(_backend)
    assert after != ran_in  # a new connection: the run's went with its memory
    assert database.rolled_back(_backend) == after  # others stay pooled as before


def test_run_uses_the_session_buffers_when_the_session_already_has_temporary_tables(
    database: Database,
) -> None:
    # PostgreSQL refuses to change temp_buffers once a temporary table was used.
    async def run(session: AsyncSession) -> tuple[int, str, int]:
        await session.execute(text("CREATE TEMPORARY TABLE other (n int) ON COMMIT DROP"))
        await session.execute(text("INSERT INTO other VALUES (1)"))
        default = await _setting(session)
        lines = await staging.stage_lines(session, "acme", FILE, work_mem_mb=64)
        assert await _setting(session) == default
        return lines, default, await _backend(session)

    lines, default, ran_in = database.rolled_back(run)
    assert (lines, default) == (1, "8MB")
    assert database.rolled_back(_backend) == ran_in  # nothing claimed: stays pooled
