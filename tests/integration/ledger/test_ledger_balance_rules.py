"""The balance rules in their home, `ledger.apply_entries()` (migration ledger_0003): the
overdraft limit, holds against the available balance, the account's currency.

These cases were unit tests of the Python `apply_movements` until the rules moved into
SQL (issue 16); the same numbers and outcomes now run against PostgreSQL through the
ledger's own writer (`journal.apply_entries`, reached by create and post).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.entrypoints.devstack import Stack
from app.ledger import api
from app.platform.db import create_engine, session_factory

T = TypeVar("T")


def _run(stack: Stack, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    assert stack.database_url is not None
    url = stack.database_url

    async def main() -> T:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def _open(stack: Stack, limit: int | None, funded_minor: int = 0) -> str:
    """A credit-normal USD account with `limit`, holding `funded_minor` posted."""

    async def work(session: AsyncSession) -> str:
        account = await api.create_account(
            session,
            code=f"rules-{secrets.token_hex(6)}",
            currency="USD",
            normal_balance="credit",
            overdraft_limit_minor=limit,
        )
        if funded_minor:
            source = await api.create_account(
                session,
                code=f"rules-src-{secrets.token_hex(6)}",
                currency="USD",
                normal_balance="credit",
                overdraft_limit_minor=None,
            )
            await api.create_transaction(
                session,
                legs=[
                    api.Leg(source.id, "debit", funded_minor, "USD"),
                    api.Leg(account.id, "credit", funded_minor, "USD"),
                ],
            )
        return account.id

    return _run(stack, work)


def _move(stack: Stack, source: str, target: str, amount_minor: int, **how: Any) -> Any:
    currency = how.pop("currency", "USD")

    async def work(session: AsyncSession) -> Any:
        return await api.create_transaction(
            session,
            legs=[
                api.Leg(source, "debit", amount_minor, currency),
                api.Leg(target, "credit", amount_minor, currency),
            ],
            **how,
        )

    return _run(stack, work)


def _balances(stack: Stack, account_id: str) -> api.Balances:
    async def work(session: AsyncSession) -> api.Balances:
        return (await api.get_account(session, account_id)).balances

    return _run(stack, work)


def _running(stack: Stack, transaction_id: str) -> list[int]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT balance_after_minor FROM ledger.postings WHERE transaction_id = %s"
            " ORDER BY leg",
            (transaction_id,),
        ).fetchall()
    return [int(row[0]) for row in rows]


def test_apply_entries_refuses_passing_the_overdraft_limit_when_the_limit_is_reached(
    stack: Stack,
) -> None:
    w = _open(stack, limit=100, funded_minor=50)
    x = _open(stack, limit=None)
    ok = _move(stack, w, x, 150)
    assert _balances(stack, w).posted_minor == -100
    assert _running(stack, ok.id) == [-100, 150]
    w2 = _open(stack, limit=100, funded_minor=50)
    with pytest.raises(api.InsufficientFundsError):
        _move(stack, w2, x, 151)
    assert _balances(stack, w2).posted_minor == 50


def test_apply_entries_counts_holds_against_available_when_release_restores_it(
    stack: Stack,
) -> None:
    w = _open(stack, limit=0, funded_minor=100)
    x = _open(stack, limit=None)
    held = _move(stack, w, x, 100, status="pending", expires_at=None)
    after_hold = _balances(stack, w)
    assert after_hold.available_minor == 0
    assert after_hold.pending_debits_minor == 100
    with pytest.raises(api.InsufficientFundsError):
        _move(stack, w, x, 1, status="pending", expires_at=None)

    async def post(session: AsyncSession) -> Any:
        return await api.post_transaction(session, held.id)

    _run(stack, post)
    posted = _balances(stack, w)
    assert posted.posted_minor == 0
    assert posted.pending_debits_minor == 0


def test_apply_entries_refuses_a_currency_when_it_differs_from_the_account(
    stack: Stack,
) -> None:
    w = _open(stack, limit=None)
    x = _open(stack, limit=None)
    with pytest.raises(api.CurrencyMismatchError):
        _move(stack, w, x, 1, currency="EUR")
