"""Accounts and their balances: opening, reading (now or as of a time), the entries list,
and the check of every stored balance against its postings.

The `ledger.balances` row of an account is its one mutable row, and the lock that
serializes writers touching it: always taken in sorted account-id order, inside
`ledger.apply_entries()` (see `transactions` for the full locking protocol). Available
balances come from `ledger.available()`, the one home of that rule.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import chain, domain, events
from app.ledger.data import Account, BadBalance, BalanceReport, Balances, Entry, EntryPage
from app.ledger.errors import (
    AccountNotFoundError,
    DuplicateAccountCodeError,
)
from app.platform import outbox
from app.platform.errors import ValidationError

# An account's balances summed from its postings: the definition every stored balance must
# agree with (as_of reads and `check_balances` both use it). `{normal}` is the account's
# normal side, a bind parameter or a column; the covering index makes it index-only.
_SUMS = """
    coalesce(sum(CASE WHEN p.effect = 'posted' AND p.direction = {normal}
                      THEN p.amount_minor::numeric
                      WHEN p.effect = 'posted' THEN -p.amount_minor::numeric END), 0) AS posted,
    coalesce(sum(CASE WHEN p.direction = 'debit' AND p.effect = 'hold'
                      THEN p.amount_minor::numeric
                      WHEN p.direction = 'debit' AND p.effect = 'release'
                      THEN -p.amount_minor::numeric END), 0) AS debits,
    coalesce(sum(CASE WHEN p.direction = 'credit' AND p.effect = 'hold'
                      THEN p.amount_minor::numeric
                      WHEN p.direction = 'credit' AND p.effect = 'release'
                      THEN -p.amount_minor::numeric END), 0) AS credits
"""
_BALANCES_AS_OF = text(
    # A constant fragment, no input (S608).
    "SELECT s.*, ledger.available(:normal, s.posted, s.debits, s.credits) AS available"  # noqa: S608
    " FROM (SELECT "
    + _SUMS.format(normal=":normal")
    + " FROM ledger.postings p WHERE p.account_id = :id AND p.created_at <= :as_of) s"
)
# One statement, so the stored rows and the postings come from one snapshot: a writer
# changes both in one transaction, and a concurrent commit cannot show as a mismatch.
_STORED_AND_RECOMPUTED = text(
    """
    SELECT b.account_id, a.normal_balance,
           b.posted_minor, b.pending_debits_minor, b.pending_credits_minor,
           ledger.available(a.normal_balance, b.posted_minor, b.pending_debits_minor,
                            b.pending_credits_minor) AS available_minor,
           s.posted, s.debits, s.credits,
           ledger.available(a.normal_balance, s.posted, s.debits, s.credits) AS available
    FROM ledger.balances b
    JOIN ledger.accounts a ON a.id = b.account_id
    CROSS JOIN LATERAL (
        SELECT """  # noqa: S608 - a constant fragment, no input
    + _SUMS.format(normal="a.normal_balance")
    + """
        FROM ledger.postings p WHERE p.account_id = b.account_id
    ) s
    WHERE b.account_id > :after
    ORDER BY b.account_id
    LIMIT :limit
    """
)
BALANCE_CHECK_BATCH_SIZE = 500
MAX_BALANCE_CHECK_ACCOUNTS = 10_000_000


async def create_account(
    session: AsyncSession,
    *,
    code: str,
    currency: str,
    normal_balance: domain.Direction,
    overdraft_limit_minor: int | None,
    customer_id: str | None,
    metadata: Mapping[str, str],
) -> Account:
    domain.currency_exponent(currency)
    encoded = json.dumps(dict(metadata), separators=(",", ":"), ensure_ascii=False)
    if len(encoded.encode()) > domain.MAX_METADATA_BYTES:
        raise ValidationError(f"metadata is larger than {domain.MAX_METADATA_BYTES} bytes")
    account_id = f"acc_{secrets.token_hex(12)}"
    now = datetime.now(UTC)
    inserted = await session.execute(
        text(
            """
            INSERT INTO ledger.accounts
                (id, code, currency, normal_balance, overdraft_limit_minor, customer_id,
                 metadata, created_at)
            VALUES (:id, :code, :currency, :normal_balance, :limit, :customer_id,
                    CAST(:metadata AS jsonb), :now)
            ON CONFLICT (code) DO NOTHING
            RETURNING id
            """
        ),
        {
            "id": account_id,
            "code": code,
            "currency": currency,
            "normal_balance": normal_balance,
            "limit": overdraft_limit_minor,
            "customer_id": customer_id,
            "metadata": encoded,
            "now": now,
        },
    )
    if inserted.first() is None:
        raise DuplicateAccountCodeError(f"an account with code {code!r} already exists")
    await session.execute(
        text("INSERT INTO ledger.balances (account_id, updated_at) VALUES (:id, :now)"),
        {"id": account_id, "now": now},
    )
    await outbox.emit(
        session,
        events.LedgerAccountCreated(
            account_id=account_id,
            code=code,
            currency=currency,
            normal_balance=normal_balance,
            customer_id=customer_id,
            occurred_at=chain.format_time(now),
        ),
    )
    return Account(
        id=account_id,
        code=code,
        currency=currency,
        normal_balance=normal_balance,
        overdraft_limit_minor=overdraft_limit_minor,
        customer_id=customer_id,
        metadata=dict(metadata),
        created_at=now,
        balances=Balances(0, 0, 0, 0),
    )


async def get_account(
    session: AsyncSession, account_id: str, as_of: datetime | None = None
) -> Account:
    row = (
        await session.execute(
            text(
                """
                SELECT a.id, a.code, a.currency, a.normal_balance, a.overdraft_limit_minor,
                       a.customer_id, a.metadata, a.created_at,
                       b.posted_minor, b.pending_debits_minor, b.pending_credits_minor,
                       ledger.available(a.normal_balance, b.posted_minor,
                                        b.pending_debits_minor, b.pending_credits_minor)
                           AS available_minor
                FROM ledger.accounts a JOIN ledger.balances b ON b.account_id = a.id
                WHERE a.id = :id
                """
            ),
            {"id": account_id},
        )
    ).first()
    if row is None:
        raise AccountNotFoundError(f"no account {account_id}")
    if as_of is None:
        balances = Balances(
            int(row.posted_minor),
            int(row.pending_debits_minor),
            int(row.pending_credits_minor),
            int(row.available_minor),
        )
    else:
        balances = await _balances_as_of(session, account_id, row.normal_balance, as_of)
    return Account(
        id=row.id,
        code=row.code,
        currency=row.currency,
        normal_balance=row.normal_balance,
        overdraft_limit_minor=row.overdraft_limit_minor,
        customer_id=row.customer_id,
        metadata=row.metadata,
        created_at=row.created_at,
        balances=balances,
        as_of=as_of,
    )


async def _balances_as_of(
    session: AsyncSession, account_id: str, normal_balance: str, as_of: datetime
) -> Balances:
    # Summed from the postings themselves, so a point-in-time balance never depends on
    # the mutable balances row.
    row = (
        await session.execute(
            _BALANCES_AS_OF, {"id": account_id, "normal": normal_balance, "as_of": as_of}
        )
    ).one()
    return Balances(int(row.posted), int(row.debits), int(row.credits), int(row.available))


async def list_entries(
    session: AsyncSession, account_id: str, *, limit: int, after_id: int | None
) -> EntryPage:
    exists = (
        await session.execute(
            text("SELECT 1 FROM ledger.accounts WHERE id = :id"), {"id": account_id}
        )
    ).first()
    if exists is None:
        raise AccountNotFoundError(f"no account {account_id}")
    rows = (
        await session.execute(
            text(
                """
                SELECT id, transaction_id, direction, amount_minor, currency, effect,
                       created_at, balance_after_minor
                FROM ledger.postings
                WHERE account_id = :id AND id > :after
                ORDER BY id
                LIMIT :limit
                """
            ),
            {"id": account_id, "after": after_id or 0, "limit": limit + 1},
        )
    ).all()
    page = rows[:limit]
    entries = tuple(
        Entry(
            id=f"pst_{row.id}",
            transaction_id=row.transaction_id,
            direction=row.direction,
            amount_minor=row.amount_minor,
            currency=row.currency,
            effect=row.effect,
            created_at=row.created_at,
            balance_after_minor=int(row.balance_after_minor),
        )
        for row in page
    )
    next_after = page[-1].id if len(rows) > limit else None
    return EntryPage(entries=entries, next_after_id=next_after)


async def check_balances(
    session: AsyncSession,
    *,
    after_account: str = "",
    max_accounts: int = MAX_BALANCE_CHECK_ACCOUNTS,
    batch_size: int = BALANCE_CHECK_BATCH_SIZE,
) -> BalanceReport:
    """Recompute every account's balances (ids after `after_account`, at most
    `max_accounts`) from its postings and name the first that disagrees with its row."""
    checked = 0
    after = after_account
    while checked < max_accounts:
        wanted = min(batch_size, max_accounts - checked)
        rows = (
            await session.execute(_STORED_AND_RECOMPUTED, {"after": after, "limit": wanted})
        ).all()
        for row in rows:
            stored = _balances(
                row.posted_minor,
                row.pending_debits_minor,
                row.pending_credits_minor,
                row.available_minor,
            )
            recomputed = _balances(row.posted, row.debits, row.credits, row.available)
            if stored != recomputed:
                return BalanceReport(False, checked, BadBalance(row.account_id, stored, recomputed))
            checked += 1
            after = row.account_id
        if len(rows) < wanted:
            return BalanceReport(True, checked, None)
    more = (
        await session.execute(
            text("SELECT 1 FROM ledger.balances WHERE account_id > :after LIMIT 1"),
            {"after": after},
        )
    ).first()
    return BalanceReport(True, checked, None, next_after_account=after if more else None)


def _balances(posted: Any, debits: Any, credits: Any, available: Any) -> Balances:
    return Balances(int(posted), int(debits), int(credits), int(available))
