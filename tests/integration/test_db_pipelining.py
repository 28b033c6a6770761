"""Round trips of app.platform.db against a real PostgreSQL (issue 16): a transaction's
first `fetch_rows` carries its BEGIN, `send_with_commit` statements travel with the COMMIT,
a failure there rolls everything back, and the connection goes back to the pool
transactional."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator

import psycopg
import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.entrypoints.devstack import Stack
from app.platform import db, idempotency
from tests.support.round_trips import RoundTripCounter

TABLE = "public.pipelining_probe"


@pytest.fixture(scope="module")
def counter(stack: Stack) -> Iterator[RoundTripCounter]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (tag text PRIMARY KEY)")
    relay = RoundTripCounter(stack.database_url)
    yield relay
    relay.close()


def _tags(stack: Stack, tag: str) -> int:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        row = connection.execute(
            f"SELECT count(*) FROM {TABLE} WHERE tag LIKE %s", (tag + "%",)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _write(session: AsyncSession, tag: str) -> None:
    """One statement read at once, one sent with the COMMIT."""
    await db.fetch_rows(
        session, "INSERT INTO public.pipelining_probe VALUES (%(t)s) RETURNING tag", {"t": tag}
    )
    await db.send_with_commit(
        session, "INSERT INTO public.pipelining_probe VALUES (%(t)s)", {"t": tag + "-late"}
    )


def test_a_transaction_takes_two_round_trips_when_it_starts_with_fetch_rows(
    counter: RoundTripCounter, stack: Stack
) -> None:
    tag = secrets.token_hex(6)

    async def scenario() -> list[int]:
        engine = db.create_engine(counter.url, pool_size=1)
        sessions = db.session_factory(engine)
        try:
            await db.run_in_transaction(sessions, lambda s: _write(s, "warm-" + tag))
            with counter.counting() as turns:
                await db.run_in_transaction(sessions, lambda s: _write(s, tag))
            return turns
        finally:
            await engine.dispose()

    # BEGIN + the first statement; the queued one + COMMIT.
    assert asyncio.run(scenario()) == [2]
    assert _tags(stack, tag) == 2


def test_everything_rolls_back_when_a_statement_sent_with_the_commit_fails(
    counter: RoundTripCounter, stack: Stack
) -> None:
    tag = secrets.token_hex(6)

    async def failing(session: AsyncSession) -> None:
        await _write(session, tag)
        # A duplicate key, found only in the pipeline with COMMIT.
        await db.send_with_commit(
            session, "INSERT INTO public.pipelining_probe VALUES (%(t)s)", {"t": tag}
        )

    async def scenario() -> tuple[bool, int]:
        engine = db.create_engine(counter.url, pool_size=1)
        sessions = db.session_factory(engine)
        try:
            with pytest.raises(DBAPIError):
                await db.run_in_transaction(sessions, failing)
            # The same pooled connection is transactional again: an uncommitted write
            # followed by a failure leaves nothing.
            async with sessions() as session:
                raw = await (await session.connection()).get_raw_connection()
                autocommit = bool(raw.driver_connection.autocommit)  # type: ignore[union-attr]
                await session.execute(
                    text("INSERT INTO public.pipelining_probe VALUES (:t)"), {"t": tag + "-x"}
                )
                await session.rollback()
            return autocommit, _tags(stack, tag)
        finally:
            await engine.dispose()

    autocommit, written = asyncio.run(scenario())
    assert autocommit is False
    assert written == 0


def test_a_completion_rolls_back_its_transaction_when_its_claim_was_taken_over(
    counter: RoundTripCounter, stack: Stack
) -> None:
    tag = secrets.token_hex(6)
    stolen = idempotency.Claim("cli_nobody", "key-" + tag, "not-the-holders-token")

    async def work(session: AsyncSession) -> None:
        await _write(session, tag)
        await idempotency.complete(session, stolen, 201, {"id": tag})

    async def scenario() -> bool:
        engine = db.create_engine(counter.url, pool_size=1)
        try:
            await db.run_in_transaction(db.session_factory(engine), work)
        except DBAPIError as error:
            return idempotency.claim_was_lost(error)
        finally:
            await engine.dispose()
        return False

    assert asyncio.run(scenario()) is True
    assert _tags(stack, tag) == 0


def _checkouts(engine: AsyncEngine) -> list[int]:
    """A counter of the pool's checkouts (a list, so the listener can bump it)."""
    seen = [0]

    def counted(*_: object) -> None:
        seen[0] += 1

    sqlalchemy_event.listen(engine.sync_engine, "checkout", counted)
    return seen


def _run_once(
    stack: Stack, work: Callable[[AsyncSession], Awaitable[object]]
) -> tuple[object, int, int]:
    """`work` in one `run_in_transaction` on a fresh one-connection engine: what it returned
    (or raised), the pool's checkouts, and the connections still checked out after it."""

    async def scenario() -> tuple[object, int, int]:
        assert stack.database_url is not None
        engine = db.create_engine(stack.database_url, pool_size=1)
        try:
            checkouts = _checkouts(engine)
            outcome: object
            try:
                outcome = await db.run_in_transaction(db.session_factory(engine), work)
            except Exception as error:  # noqa: BLE001 - the outcome under test
                outcome = error
            still_out: int = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
            return outcome, checkouts[0], still_out
        finally:
            await engine.dispose()

    return asyncio.run(scenario())


def test_a_session_begins_only_when_a_statement_runs_on_it_when_work_only_queues(
    stack: Stack,
) -> None:
    """A transfer's work only queues statements: its commit takes one pooled connection
    for the pipeline, and the session's lazily begun transaction takes none."""
    tag = secrets.token_hex(6)

    async def queued_only(session: AsyncSession) -> bool:
        await db.send_with_commit(
            session, "INSERT INTO public.pipelining_probe VALUES (%(t)s)", {"t": tag}
        )
        return session.in_transaction()

    assert _run_once(stack, queued_only) == (False, 1, 0)
    assert _tags(stack, tag) == 1


def test_a_statement_run_on_the_session_is_committed_when_work_returns(stack: Stack) -> None:
    tag = secrets.token_hex(6)

    async def through_session(session: AsyncSession) -> str:
        await session.execute(text("INSERT INTO public.pipelining_probe VALUES (:t)"), {"t": tag})
        return "done"

    assert _run_once(stack, through_session) == ("done", 1, 0)
    assert _tags(stack, tag) == 1


def test_a_statement_run_on_the_session_is_rolled_back_when_work_raises(stack: Stack) -> None:
    tag = secrets.token_hex(6)

    async def failing(session: AsyncSession) -> None:
        await session.execute(text("INSERT INTO public.pipelining_probe VALUES (:t)"), {"t": tag})
        raise LookupError("the handler refused after writing")

    outcome, checkouts, still_out = _run_once(stack, failing)
    assert isinstance(outcome, LookupError)
    assert (checkouts, still_out) == (1, 0)
    assert _tags(stack, tag) == 0
