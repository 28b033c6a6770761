"""The group committer (platform/commit_groups.py) with real connections: who commits,
who is left out, and what every member learns when its group's exchange breaks off."""

from __future__ import annotations

import asyncio
import functools
import secrets
from typing import Any

import psycopg
import pytest

from app.entrypoints.devstack import Stack
from app.platform import commit_groups, db_pipeline
from app.platform.db import create_engine

_INSERT = "INSERT INTO commit_group_probe (tag) VALUES (%(tag)s)"
_SLOW = "SELECT pg_sleep(CAST(%(seconds)s AS float8))"


@pytest.fixture(scope="module")
def url(stack: Stack) -> str:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS commit_group_probe (tag text PRIMARY KEY)")
    return stack.database_url


def _tags(url: str, prefix: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT tag FROM commit_group_probe WHERE tag LIKE %s", (prefix + "%",)
        ).fetchall()
    return {str(tag) for (tag,) in rows}


def _insert(tag: str) -> list[commit_groups.Statement]:
    return [(_INSERT, {"tag": tag})]


def _slow(seconds: float) -> list[commit_groups.Statement]:
    return [(_SLOW, {"seconds": str(seconds)})]


async def _with_groups(url: str, body: Any) -> Any:
    engine = create_engine(url, pool_size=4)
    try:
        groups = commit_groups.groups_for(
            engine, functools.partial(db_pipeline._commit_on_pooled, engine)
        )
        return await body(groups)
    finally:
        await engine.dispose()


def test_a_member_cancelled_before_its_turn_is_left_out_and_the_rest_commit(url: str) -> None:
    prefix = f"cancel-{secrets.token_hex(4)}-"

    async def body(groups: commit_groups.CommitGroups) -> list[object]:
        leader = asyncio.create_task(groups.commit(_slow(0.3), _insert(prefix + "a")))
        await asyncio.sleep(0.05)  # the leader's commit is on the wire
        gone = asyncio.create_task(groups.commit([], _insert(prefix + "b")))
        stays = asyncio.create_task(groups.commit([], _insert(prefix + "c")))
        await asyncio.sleep(0.05)
        gone.cancel()
        outcomes = await asyncio.gather(leader, gone, stays, return_exceptions=True)
        # Nobody is left leading a group that never comes: the next commit goes through.
        await asyncio.wait_for(groups.commit([], _insert(prefix + "d")), timeout=5)
        return list(outcomes)

    outcomes = asyncio.run(_with_groups(url, body))
    assert outcomes[0] is None
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert outcomes[2] is None
    assert _tags(url, prefix) == {prefix + "a", prefix + "c", prefix + "d"}


def test_the_next_commit_goes_through_when_a_leader_is_cancelled_before_its_group(
    url: str,
) -> None:
    prefix = f"lead-gone-{secrets.token_hex(4)}-"

    async def body(groups: commit_groups.CommitGroups) -> None:
        leader = asyncio.create_task(groups.commit([], _insert(prefix + "gone")))
        await asyncio.sleep(0)  # the leader waits its one turn before closing the group
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await asyncio.wait_for(groups.commit([], _insert(prefix + "next")), timeout=5)

    asyncio.run(_with_groups(url, body))
    assert _tags(url, prefix) == {prefix + "next"}


def test_a_member_whose_statement_refuses_gets_its_own_error_and_the_rest_commit(
    url: str,
) -> None:
    prefix = f"refuse-{secrets.token_hex(4)}-"

    async def body(groups: commit_groups.CommitGroups) -> list[object]:
        leader = asyncio.create_task(groups.commit(_slow(0.2), _insert(prefix + "taken")))
        await asyncio.sleep(0.05)
        members = [
            asyncio.create_task(groups.commit([], _insert(prefix + tag)))
            for tag in ("x", "taken", "y")
        ]
        return list(await asyncio.gather(leader, *members, return_exceptions=True))

    outcomes = asyncio.run(_with_groups(url, body))
    assert outcomes[0] is None
    assert outcomes[1] is None
    assert isinstance(outcomes[2], psycopg.errors.UniqueViolation)
    assert outcomes[3] is None
    assert _tags(url, prefix) == {prefix + "taken", prefix + "x", prefix + "y"}


def test_every_member_learns_the_outcome_is_unknown_when_its_group_connection_is_killed(
    url: str,
) -> None:
    """A real kill of the backend mid-group: nobody is told it committed, nothing is kept,
    and nothing is committed twice by a retry."""
    prefix = f"killed-{secrets.token_hex(4)}-"

    async def kill_the_sleeper(marker: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            for _ in range(100):
                cursor = await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE %s AND pid <> pg_backend_pid()",
                    (f"%{marker}%",),
                )
                if await cursor.fetchall():
                    return
                await asyncio.sleep(0.02)

    async def body(groups: commit_groups.CommitGroups) -> list[object]:
        leader = asyncio.create_task(groups.commit(_slow(0.2), _insert(prefix + "lead")))
        await asyncio.sleep(0.05)
        # The group after the leader's: its first statement sleeps until it is killed.
        marker = f"pg_sleep_marker_{secrets.token_hex(4)}"
        sleeper: list[commit_groups.Statement] = [("SELECT pg_sleep(5) AS " + marker, {})]
        members = [
            asyncio.create_task(groups.commit(sleeper, _insert(prefix + "one"))),
            asyncio.create_task(groups.commit([], _insert(prefix + "two"))),
        ]
        await kill_the_sleeper(marker)
        return list(await asyncio.gather(leader, *members, return_exceptions=True))

    outcomes = asyncio.run(_with_groups(url, body))
    assert outcomes[0] is None
    for outcome in outcomes[1:]:
        assert isinstance(outcome, psycopg.OperationalError), outcome
    assert _tags(url, prefix) == {prefix + "lead"}
