"""The chain head anchored in the evidence log, and verify's comparison with it.

These run the API and the evidence service as real processes (`live_stack`): the worker
anchors through the evidence service's signed HTTP API, with a token from the live API.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from app.entrypoints import worker
from app.entrypoints.devstack import Stack
from app.ledger import chain, journal
from app.platform.db import create_engine, session_factory
from app.platform.settings import Settings
from tests.integration.ledger.helpers import open_account, transfer

WRITE = ["ledger:write", "ledger:read"]


@pytest.fixture(scope="module")
def client(client_factory: Any) -> Any:
    return client_factory(scopes=WRITE)


def _db(stack: Stack) -> psycopg.Connection[Any]:
    assert stack.database_url is not None
    return psycopg.connect(stack.database_url, autocommit=True)


def _write_some(client: Any) -> str:
    source = open_account(client, overdraft_limit_minor=None)["id"]
    target = open_account(client)["id"]
    response = transfer(client, source, target, 77, description="original")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _rehash_from(database_url: str, first_seq: int) -> None:
    """What an owner who rewrites the ledger would do next: recompute every hash from
    `first_seq` on, so that the chain is consistent with the rewritten rows again."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            previous = (
                await session.execute(
                    text("SELECT hash FROM ledger.journal_entries WHERE seq = :s"),
                    {"s": first_seq - 1},
                )
            ).scalar_one_or_none() or chain.GENESIS_HASH
            entries = (
                await session.execute(
                    text(
                        "SELECT seq, id, transaction_id, kind, occurred_at"
                        " FROM ledger.journal_entries WHERE seq >= :s ORDER BY seq"
                    ),
                    {"s": first_seq},
                )
            ).all()
            postings, details = await journal._entry_rows(session, [e.id for e in entries])
            for entry in entries:
                canonical = chain.canonical_entry(
                    entry_id=entry.id,
                    transaction_id=entry.transaction_id,
                    kind=entry.kind,
                    occurred_at=entry.occurred_at,
                    detail=details[entry.id],
                    postings=postings[entry.id],
                )
                new_hash = chain.chain_hash(previous, canonical)
                await session.execute(
                    text(
                        "UPDATE ledger.journal_entries SET prev_hash = :p, hash = :h WHERE seq = :s"
                    ),
                    {"p": previous, "h": new_hash, "s": entry.seq},
                )
                previous = new_hash
            await session.execute(
                text("UPDATE ledger.chain_head SET last_hash = :h WHERE id = 1"),
                {"h": previous},
            )
    finally:
        await engine.dispose()


def test_verify_finds_the_live_chain_consistent_with_the_head_the_worker_anchored(
    client: Any, live_stack: Stack, settings: Settings
) -> None:
    _write_some(client)
    asyncio.run(worker.run_once(settings))
    with _db(live_stack) as connection:
        head = connection.execute(
            "SELECT last_seq, last_hash FROM ledger.chain_head WHERE id = 1"
        ).fetchone()
    assert head is not None
    report = client.get("/v1/ledger/verify").json()
    assert report["ok"] is True, report
    anchor = report["anchor"]
    assert anchor["status"] == "consistent"
    assert (anchor["seq"], anchor["hash"]) == (head[0], head[1])
    assert anchor["record_id"].startswith("evd_")
    # The record is in the evidence log, typed and control-mapped, written by the worker.
    with psycopg.connect(
        live_stack.database_url_for("moneypath_evidence"), autocommit=True
    ) as connection:
        row = connection.execute(
            "SELECT 1 FROM evidence.records WHERE id = %s", (anchor["record_id"],)
        ).fetchone()
    assert row is not None


def test_verify_reports_a_contradiction_with_the_anchor_when_the_owner_rewrites_the_chain(
    client: Any, live_stack: Stack, settings: Settings
) -> None:
    victim = _write_some(client)
    asyncio.run(worker.run_once(settings))
    assert client.get("/v1/ledger/verify").json()["anchor"]["status"] == "consistent"
    assert live_stack.database_url is not None
    with _db(live_stack) as connection:
        seq_row = connection.execute(
            "SELECT seq FROM ledger.journal_entries WHERE transaction_id = %s", (victim,)
        ).fetchone()
        assert seq_row is not None
        saved = connection.execute(
            "SELECT seq, prev_hash, hash FROM ledger.journal_entries WHERE seq >= %s",
            (seq_row[0],),
        ).fetchall()
        saved_head = connection.execute(
            "SELECT last_hash FROM ledger.chain_head WHERE id = 1"
        ).fetchone()
        connection.execute("ALTER TABLE ledger.transactions DISABLE TRIGGER USER")
        connection.execute("ALTER TABLE ledger.journal_entries DISABLE TRIGGER USER")
        try:
            connection.execute(
                "UPDATE ledger.transactions SET description = 'rewritten' WHERE id = %s",
                (victim,),
            )
            asyncio.run(_rehash_from(live_stack.database_url, seq_row[0]))
            report = client.get("/v1/ledger/verify").json()
        finally:
            connection.execute(
                "UPDATE ledger.transactions SET description = 'original' WHERE id = %s",
                (victim,),
            )
            for seq, prev_hash, hash_ in saved:
                connection.execute(
                    "UPDATE ledger.journal_entries SET prev_hash = %s, hash = %s WHERE seq = %s",
                    (prev_hash, hash_, seq),
                )
            assert saved_head is not None
            connection.execute(
                "UPDATE ledger.chain_head SET last_hash = %s WHERE id = 1", (saved_head[0],)
            )
            connection.execute("ALTER TABLE ledger.journal_entries ENABLE TRIGGER USER")
            connection.execute("ALTER TABLE ledger.transactions ENABLE TRIGGER USER")
    # The rewritten chain is consistent in itself, and the balances still add up...
    assert "first_bad_entry" not in report, report
    assert "first_bad_balance" not in report, report
    # ...but it contradicts the head anchored in the evidence log.
    assert report["ok"] is False
    assert report["anchor"]["status"] == "hash_mismatch"
    assert report["anchor"]["live_hash"] != report["anchor"]["hash"]
    restored = client.get("/v1/ledger/verify").json()
    assert restored["ok"] is True, restored
    assert restored["anchor"]["status"] == "consistent"
