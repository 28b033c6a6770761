"""Accounts and their balances: opening, reading (now or as of a time), the entries list,
and the balance-row locks every writer takes.

The `ledger.balances` row of an account is its one mutable row, and the lock that
serializes writers touching it: always taken in sorted account-id order (see
`transactions` for the full locking protocol).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import chain, domain, events
from app.ledger.data import Account, Balances, Entry, EntryPage
from app.ledger.domain import AccountState
from app.ledger.errors import (
    AccountNotFoundError,
    DuplicateAccountCodeError,
    UnknownAccountError,
)
from app.platform import outbox
from app.platform.errors import ValidationError

_LOCK_ACCOUNTS = text(
    """
    SELECT a.id, a.currency, a.normal_balance, a.overdraft_limit_minor,
           b.posted_minor, b.pending_debits_minor, b.pending_credits_minor
    FROM ledger.balances b JOIN ledger.accounts a ON a.id = b.account_id
    WHERE b.account_id = ANY(:ids)
    ORDER BY b.account_id
    FOR UPDATE OF b
    """
)


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
                       b.posted_minor, b.pending_debits_minor, b.pending_credits_minor
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
        posted, debits, credits = (
            int(row.posted_minor),
            int(row.pending_debits_minor),
            int(row.pending_credits_minor),
        )
    else:
        posted, debits, credits = await _balances_as_of(
            session, account_id, row.normal_balance, as_of
        )
    return Account(
        id=row.id,
        code=row.code,
        currency=row.currency,
        normal_balance=row.normal_balance,
        overdraft_limit_minor=row.overdraft_limit_minor,
        customer_id=row.customer_id,
        metadata=row.metadata,
        created_at=row.created_at,
        balances=Balances(
            posted, debits, credits, domain.available(row.normal_balance, posted, debits, credits)
        ),
        as_of=as_of,
    )


async def _balances_as_of(
    session: AsyncSession, account_id: str, normal_balance: str, as_of: datetime
) -> tuple[int, int, int]:
    # Summed from the postings themselves (the covering index makes it an index-only
    # scan), so a point-in-time balance never depends on the mutable balances row.
    row = (
        await session.execute(
            text(
                """
                SELECT
                  coalesce(sum(CASE WHEN effect = 'posted' AND direction = :normal
                                    THEN amount_minor::numeric
                                    WHEN effect = 'posted' THEN -amount_minor::numeric END), 0)
                    AS posted,
                  coalesce(sum(CASE WHEN direction = 'debit' AND effect = 'hold'
                                    THEN amount_minor::numeric
                                    WHEN direction = 'debit' AND effect = 'release'
                                    THEN -amount_minor::numeric END), 0) AS debits,
                  coalesce(sum(CASE WHEN direction = 'credit' AND effect = 'hold'
                                    THEN amount_minor::numeric
                                    WHEN direction = 'credit' AND effect = 'release'
                                    THEN -amount_minor::numeric END), 0) AS credits
                FROM ledger.postings
                WHERE account_id = :id AND created_at <= :as_of
                """
            ),
            {"id": account_id, "normal": normal_balance, "as_of": as_of},
        )
    ).one()
    return int(row.posted), int(row.debits), int(row.credits)


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


async def lock_accounts(
    session: AsyncSession, account_ids: Iterable[str]
) -> dict[str, AccountState]:
    """Lock the accounts' balance rows in id order and read them. Raises UnknownAccountError."""
    wanted = sorted(set(account_ids))
    rows = (await session.execute(_LOCK_ACCOUNTS, {"ids": wanted})).all()
    return account_states(rows, wanted)


def account_states(rows: Sequence[Row[Any]], wanted: Sequence[str]) -> dict[str, AccountState]:
    """Rows of `_LOCK_ACCOUNTS`' columns as domain states. Raises UnknownAccountError."""
    found = {
        row.id: AccountState(
            account_id=row.id,
            currency=row.currency,
            normal_balance=row.normal_balance,
            overdraft_limit_minor=row.overdraft_limit_minor,
            posted_minor=int(row.posted_minor),
            pending_debits_minor=int(row.pending_debits_minor),
            pending_credits_minor=int(row.pending_credits_minor),
        )
        for row in rows
    }
    missing = [account_id for account_id in wanted if account_id not in found]
    if missing:
        raise UnknownAccountError(f"no account {missing[0]}", account_id=missing[0])
    return found
