"""The ledger's public door: functions, frozen DTOs and errors other domains may use.

Every write function takes the caller's `AsyncSession` and runs inside the caller's
transaction, so a payment saga can post to the ledger atomically with its own step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ledger import accounts, journal, maintenance, transactions
from app.ledger.currencies import EXPONENTS
from app.ledger.data import (
    Account,
    AnchorReport,
    BadBalance,
    BadEntry,
    BalanceReport,
    Balances,
    ChainHead,
    ChainReport,
    Entry,
    EntryPage,
    LedgerReport,
    NewTransaction,
    Transaction,
)
from app.ledger.domain import (
    CLOSING_STATUSES,
    MAX_AMOUNT_MINOR,
    MAX_POSTINGS,
    OPENING_STATUSES,
    Direction,
    Leg,
    TransactionStatus,
    currency_exponent,
    parse_time,
)
from app.ledger.errors import (
    AccountNotFoundError,
    CurrencyMismatchError,
    DuplicateAccountCodeError,
    InsufficientFundsError,
    InvalidStateError,
    PartialPostUnsupportedError,
    TransactionExpiredError,
    TransactionNotFoundError,
    UnbalancedTransactionError,
    UnknownAccountError,
    UnknownCurrencyError,
)
from app.ledger.journal import MAX_VERIFY_ENTRIES
from app.platform.errors import ValidationError

# API.md: a batch carries 1 to 1,000 transactions.
MAX_BATCH_TRANSACTIONS = 1000

__all__ = [
    "CLOSING_STATUSES",
    "MAX_AMOUNT_MINOR",
    "MAX_BATCH_TRANSACTIONS",
    "MAX_POSTINGS",
    "MAX_VERIFY_ENTRIES",
    "OPENING_STATUSES",
    "Account",
    "AccountNotFoundError",
    "AnchorReport",
    "BadBalance",
    "BadEntry",
    "BalanceReport",
    "Balances",
    "ChainHead",
    "ChainReport",
    "CurrencyMismatchError",
    "Direction",
    "DuplicateAccountCodeError",
    "Entry",
    "EntryPage",
    "InsufficientFundsError",
    "InvalidStateError",
    "LedgerReport",
    "Leg",
    "NewTransaction",
    "PartialPostUnsupportedError",
    "Transaction",
    "TransactionExpiredError",
    "TransactionNotFoundError",
    "TransactionStatus",
    "UnbalancedTransactionError",
    "UnknownAccountError",
    "UnknownCurrencyError",
    "chain_head",
    "create_account",
    "create_transaction",
    "create_transactions",
    "currencies",
    "currency_exponent",
    "ensure_posting_partitions",
    "expire_holds",
    "get_account",
    "get_transaction",
    "list_entries",
    "parse_time",
    "post_transaction",
    "reverse_transaction",
    "verify_chain",
    "verify_ledger",
    "void_transaction",
]


def currencies() -> Mapping[str, int | None]:
    """Every active ISO 4217 code with its exponent (None where ISO lists no minor unit)."""
    return EXPONENTS


async def create_account(
    session: AsyncSession,
    *,
    code: str,
    currency: str,
    normal_balance: Direction,
    overdraft_limit_minor: int | None = 0,
    customer_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Account:
    """Open an account with zero balances.

    Raises UnknownCurrencyError, DuplicateAccountCodeError, and ValidationError when
    metadata exceeds 4 KB.
    """
    return await accounts.create_account(
        session,
        code=code,
        currency=currency,
        normal_balance=normal_balance,
        overdraft_limit_minor=overdraft_limit_minor,
        customer_id=customer_id,
        metadata=metadata or {},
    )


async def get_account(
    session: AsyncSession, account_id: str, *, as_of: datetime | None = None
) -> Account:
    """The account with its current balances, or those at `as_of` (summed from postings).

    Raises AccountNotFoundError.
    """
    return await accounts.get_account(session, account_id, as_of)


async def list_entries(
    session: AsyncSession, account_id: str, *, limit: int, after_id: int | None = None
) -> EntryPage:
    """The account's postings, oldest first, each with the running posted balance.

    Raises AccountNotFoundError.
    """
    return await accounts.list_entries(session, account_id, limit=limit, after_id=after_id)


async def create_transaction(
    session: AsyncSession,
    *,
    legs: Sequence[Leg],
    status: str = TransactionStatus.POSTED,
    expires_at: datetime | None = None,
    description: str | None = None,
    external_ref: str | None = None,
) -> Transaction:
    """Write a balanced transaction (posted, or pending as a hold until `expires_at`).

    Raises ValidationError, UnknownCurrencyError, UnbalancedTransactionError,
    UnknownAccountError, CurrencyMismatchError, InsufficientFundsError. The last three
    are decided under the balance locks by `ledger.apply_entries()`, which is sent with
    the COMMIT inside `db.run_in_transaction` (so they are raised from there) and at once
    in any other transaction.
    """
    return await transactions.create_transaction(
        session,
        legs=legs,
        status=status,
        expires_at=expires_at,
        description=description,
        external_ref=external_ref,
    )


async def create_transactions(
    session: AsyncSession, items: Sequence[NewTransaction]
) -> list[Transaction]:
    """Write a batch, all or nothing: each item validated, balanced, chained and published
    exactly as `create_transaction` would. The refusal of an item raises that item's
    error (as create_transaction) with `index`: its position in `items`.
    """
    if not 1 <= len(items) <= MAX_BATCH_TRANSACTIONS:
        raise ValidationError(f"a batch holds 1 to {MAX_BATCH_TRANSACTIONS} transactions")
    return await transactions.create_transactions(session, items)


async def post_transaction(
    session: AsyncSession, transaction_id: str, *, amount_minor: int | None = None
) -> Transaction:
    """Post a pending transaction in full, or `amount_minor` of a two-posting one.

    Raises TransactionNotFoundError, InvalidStateError, TransactionExpiredError,
    PartialPostUnsupportedError, ValidationError (amount above the hold).
    """
    return await transactions.post_transaction(session, transaction_id, amount_minor)


async def void_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    """Release a pending transaction's hold.

    Raises TransactionNotFoundError, InvalidStateError, TransactionExpiredError.
    """
    return await transactions.void_transaction(session, transaction_id)


async def reverse_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    """Write the mirror of a posted transaction; the original rows never change.

    Raises TransactionNotFoundError, InvalidStateError (not posted, or already reversed),
    InsufficientFundsError (the mirror would overdraw an account).
    """
    return await transactions.reverse_transaction(session, transaction_id)


async def get_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    """The transaction with its current status and derived `reversed_by`.

    Raises TransactionNotFoundError.
    """
    return await transactions.get_transaction(session, transaction_id)


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Recompute the journal hash chain from the stored rows; names the first bad entry."""
    return await journal.verify_chain(session)


async def verify_ledger(
    session: AsyncSession,
    *,
    from_seq: int | None = 1,
    after_account: str | None = "",
    limit: int = journal.MAX_VERIFY_ENTRIES,
    anchored: ChainHead | None = None,
    anchor_record_id: str | None = None,
) -> LedgerReport:
    """The chain from `from_seq` and the balances of the accounts after `after_account`,
    at most `limit` of each; the report says where a check cut short goes on. None skips
    that part (a continuation whose part is already done). `anchored`, the latest chain
    head in the evidence log (`anchor_record_id` its record), is compared with the live
    chain; a contradiction makes the report not ok."""
    chain_report = (
        ChainReport(True, 0, None)
        if from_seq is None
        else await journal.verify_chain(session, from_seq=from_seq, max_entries=limit)
    )
    balance_report = (
        BalanceReport(True, 0, None)
        if after_account is None
        else await accounts.check_balances(session, after_account=after_account, max_accounts=limit)
    )
    anchor_report = await journal.check_anchor(session, anchored, anchor_record_id)
    return LedgerReport(chain_report, balance_report, anchor_report)


async def chain_head(session: AsyncSession) -> ChainHead:
    """The chain's last entry (seq and hash), to anchor in the evidence log."""
    return await journal.chain_head(session)


async def expire_holds(
    sessions: async_sessionmaker[AsyncSession],
    *,
    max_holds: int = maintenance.MAX_HOLDS_PER_CYCLE,
) -> int:
    """Worker step: expire up to `max_holds` overdue holds; returns how many expired."""
    return await maintenance.expire_holds(sessions, max_holds=max_holds)


async def ensure_posting_partitions(
    session: AsyncSession, months_ahead: int = maintenance.POSTINGS_MONTHS_AHEAD
) -> int:
    """Worker step: create the monthly postings partitions ahead; returns how many were new."""
    return await maintenance.ensure_partitions(session, months_ahead)
