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


def _batch(stack: Stack, moves: list[tuple[str, str, int, str]]) -> list[Any]:
    """One batch (`api.create_transactions`): each move is (source, target, amount, status)."""

    async def work(session: AsyncSession) -> list[Any]:
        return await api.create_transactions(
            session,
            [
                api.NewTransaction(
                    legs=(
                        api.Leg(source, "debit", amount_minor, "USD"),
                        api.Leg(target, "credit", amount_minor, "USD"),
                    ),
                    status=status,
                )
                for source, target, amount_minor, status in moves
            ],
        )

    return _run(stack, work)


def test_apply_entries_keeps_each_running_balance_when_a_batch_spans_many_accounts(
    stack: Stack,
) -> None:
    # Six accounts whose id order has nothing to do with the order the items name them
    # in: every posting must land on its own account's slot, whatever the rank.
    names = [_open(stack, limit=None) for _ in range(6)]
    moves = [
        (names[i % 6], names[(5 * i + 1) % 6], 10 + i, "pending" if i % 7 == 3 else "posted")
        for i in range(24)
        if i % 6 != (5 * i + 1) % 6
    ]
    written = _batch(stack, moves)
    posted = dict.fromkeys(names, 0)
    debits = dict.fromkeys(names, 0)
    credits = dict.fromkeys(names, 0)
    for (source, target, amount_minor, status), transaction in zip(moves, written, strict=True):
        if status == "posted":
            # Credit-normal accounts: a debit lowers posted, a credit raises it.
            posted[source] -= amount_minor
            posted[target] += amount_minor
        else:
            debits[source] += amount_minor
            credits[target] += amount_minor
        assert _running(stack, transaction.id) == [posted[source], posted[target]]
    for name in names:
        found = _balances(stack, name)
        assert (found.posted_minor, found.pending_debits_minor, found.pending_credits_minor) == (
            posted[name],
            debits[name],
            credits[name],
        )


@pytest.mark.parametrize(
    ("spoil", "refusal", "index"),
    [
        # Item 4 overdraws the wallet only after items 0 and 2 spent from it; item 5
        # would have refilled it, but entries are checked in order.
        (None, api.InsufficientFundsError, 4),
        # An unknown account is refused before any balance rule, so item 5 is named
        # although item 4 overdraws first.
        ("unknown", api.UnknownAccountError, 5),
        # A currency mismatch is refused at its own item, before item 4's overdraft.
        ("currency", api.CurrencyMismatchError, 3),
    ],
)
def test_apply_entries_names_the_refused_item_and_writes_nothing_when_a_batch_fails(
    stack: Stack, spoil: str | None, refusal: type[Exception], index: int
) -> None:
    wallet = _open(stack, limit=0, funded_minor=100)
    others = [_open(stack, limit=None) for _ in range(4)]
    moves = [
        (wallet, others[0], 40, "posted"),
        (others[1], others[2], 5, "posted"),
        (wallet, others[3], 40, "posted"),
        (others[2], others[1], 1, "posted"),
        (wallet, others[0], 30, "posted"),
        (others[3], wallet, 50, "posted"),
    ]
    if spoil == "unknown":
        moves[5] = (others[3], f"acc_{secrets.token_hex(12)}", 50, "posted")
    currency = {3: "EUR"} if spoil == "currency" else {}

    async def work(session: AsyncSession) -> list[Any]:
        return await api.create_transactions(
            session,
            [
                api.NewTransaction(
                    legs=(
                        api.Leg(source, "debit", amount_minor, currency.get(i, "USD")),
                        api.Leg(target, "credit", amount_minor, currency.get(i, "USD")),
                    )
                )
                for i, (source, target, amount_minor, _) in enumerate(moves)
            ],
        )

    with pytest.raises(refusal) as refused:
        _run(stack, work)
    assert getattr(refused.value, "extra", {}).get("index") == index
    assert _balances(stack, wallet).posted_minor == 100
    assert [_balances(stack, other).posted_minor for other in others] == [0, 0, 0, 0]
