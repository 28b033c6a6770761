"""Transactions: create, read, post, void, expire and reverse. Each runs inside the
caller's database transaction; what each may do is decided by `domain.transition`.

Locking protocol (every writer follows it, so there is no deadlock cycle):
1. the pending transaction's `open_holds` row (post, void, expire) or the original
   transaction row (reverse);
2. inside `ledger.apply_entries()` (`journal.apply_entries`), which is sent with the COMMIT
   (`db.send_with_commit`): the single `chain_head` row that makes the hash chain linear,
   then the `balances` rows of every account touched, in sorted account-id order. These
   are held for that call and the commit only; since the chain head serializes journal
   writes anyway, nobody waits for a balance row while holding it.

One job, not split: a create (and a reverse) is a batch of one, sharing ids, clock, locks.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import LiteralString

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import chain, domain, events, journal
from app.ledger.data import NewTransaction, Transaction
from app.ledger.domain import Leg, TransactionFacts, TransactionStatus
from app.ledger.errors import TransactionNotFoundError
from app.platform import outbox
from app.platform.db import send_with_commit
from app.platform.errors import DomainError, InvariantViolation

# New transactions' rows (and their holds, when pending). Sent with the COMMIT, before the
# journal write (`journal.apply_entries`): nothing reads them earlier, and a refusal there
# rolls them back with everything else. The rows travel as one JSON array of objects
# (cheaper to send than an array per column).
_INSERT_TRANSACTIONS: LiteralString = """
    WITH created AS (
        INSERT INTO ledger.transactions
            (id, entry_id, status, expires_at, description, external_ref, reverses,
             posting_count, created_at)
        SELECT v.id, v.entry_id, v.status, v.expires_at, v.description, v.external_ref,
               v.reverses, v.posting_count, CAST(%(created_at)s AS timestamptz)
        FROM jsonb_to_recordset(CAST(%(rows)s AS jsonb))
             AS v(id text, entry_id text, status text, expires_at timestamptz,
                  description text, external_ref text, reverses text, posting_count smallint)
        RETURNING id, status, expires_at
    )
    INSERT INTO ledger.open_holds (transaction_id, expires_at)
    SELECT id, expires_at FROM created WHERE status = %(pending)s
    """


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _lines(legs: Iterable[Leg]) -> tuple[events.PostingLine, ...]:
    return tuple(
        events.PostingLine(leg.account_id, leg.direction, leg.amount_minor, leg.currency)
        for leg in legs
    )


async def create_transaction(
    session: AsyncSession,
    *,
    legs: Sequence[Leg],
    status: str,
    expires_at: datetime | None,
    description: str | None,
    external_ref: str | None,
    reverses: str | None = None,
) -> Transaction:
    created = await create_transactions(
        session,
        [NewTransaction(tuple(legs), status, expires_at, description, external_ref, reverses)],
        name_index=False,
    )
    return created[0]


async def create_transactions(
    session: AsyncSession, items: Sequence[NewTransaction], *, name_index: bool = True
) -> list[Transaction]:
    """Write `items` in order, all or nothing, each exactly as a single create.

    A refusal raises the item's own DomainError; with `name_index` it carries the item's
    `index` (its position in `items`).
    """
    received_at = _now()
    changes: list[domain.Change] = []
    for index, item in enumerate(items):
        with _naming(index, name_index):
            changes.append(
                domain.transition(
                    None, domain.Create(item.status, item.legs, item.expires_at), received_at
                )
            )
    transaction_ids = [_new_id("txn") for _ in items]
    entry_ids = [_new_id("jrn") for _ in items]
    when = chain.format_time(received_at)
    published: list[object] = []
    for transaction_id, item, change in zip(transaction_ids, items, changes, strict=True):
        if change.status is TransactionStatus.POSTED:
            published.append(
                events.LedgerTransactionPosted(
                    transaction_id, _lines(change.legs), item.reverses, when
                )
            )
        else:
            if change.expires_at is None:
                raise InvariantViolation("ledger.pending_expiry", "a hold without expires_at")
            published.append(
                events.LedgerTransactionPending(
                    transaction_id,
                    _lines(change.legs),
                    chain.format_time(change.expires_at),
                    when,
                )
            )
    await outbox.emit_many(session, published)
    await send_with_commit(
        session,
        _INSERT_TRANSACTIONS,
        {
            "rows": json.dumps(
                [
                    {
                        "id": transaction_id,
                        "entry_id": entry_id,
                        "status": str(change.status),
                        "expires_at": (
                            None if change.expires_at is None else change.expires_at.isoformat()
                        ),
                        "description": item.description,
                        "external_ref": item.external_ref,
                        "reverses": item.reverses,
                        "posting_count": len(change.legs),
                    }
                    for transaction_id, entry_id, item, change in zip(
                        transaction_ids, entry_ids, items, changes, strict=True
                    )
                ],
                separators=(",", ":"),
            ),
            "created_at": received_at.isoformat(),
            "pending": str(TransactionStatus.PENDING),
        },
    )
    drafts = [
        journal.EntryDraft(
            transaction_id=transaction_id,
            entry_id=entry_id,
            kind=domain.JournalKind.CREATE,
            detail=journal.creation_detail(
                change.status, change.expires_at, item.description, item.external_ref, item.reverses
            ),
            movements=change.movements,
        )
        for transaction_id, entry_id, item, change in zip(
            transaction_ids, entry_ids, items, changes, strict=True
        )
    ]
    await journal.apply_entries(session, drafts, name_index=name_index)
    return [
        Transaction(
            id=transaction_id,
            status=change.status,
            postings=change.legs,
            expires_at=change.expires_at,
            description=item.description,
            external_ref=item.external_ref,
            reverses=item.reverses,
            reversed_by=None,
            posted_amount_minor=None,
            created_at=received_at,
            status_changed_at=None,
        )
        for transaction_id, item, change in zip(transaction_ids, items, changes, strict=True)
    ]


@contextlib.contextmanager
def _naming(index: int, name_index: bool) -> Iterator[None]:
    """Add the failing item's position to a refusal of a batch."""
    try:
        yield
    except DomainError as error:
        if name_index:
            error.extra["index"] = index
        raise


async def _original_legs(session: AsyncSession, entry_id: str, created_at: datetime) -> list[Leg]:
    rows = (
        await session.execute(
            text(
                """
                SELECT account_id, direction, amount_minor, currency
                FROM ledger.postings
                WHERE entry_id = :entry_id AND created_at >= :created_at
                ORDER BY leg
                """
            ),
            {"entry_id": entry_id, "created_at": created_at},
        )
    ).all()
    return [Leg(row.account_id, row.direction, row.amount_minor, row.currency) for row in rows]


async def get_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    row = (
        await session.execute(
            text(
                """
                SELECT t.id, t.entry_id, t.status, t.expires_at, t.description,
                       t.external_ref, t.reverses, t.created_at,
                       c.status AS changed_status, c.posted_amount_minor,
                       c.occurred_at AS changed_at, r.id AS reversed_by
                FROM ledger.transactions t
                LEFT JOIN ledger.transaction_status_changes c ON c.transaction_id = t.id
                LEFT JOIN ledger.transactions r ON r.reverses = t.id
                WHERE t.id = :id
                """
            ),
            {"id": transaction_id},
        )
    ).first()
    if row is None:
        raise TransactionNotFoundError(f"no transaction {transaction_id}")
    legs = await _original_legs(session, row.entry_id, row.created_at)
    return Transaction(
        id=row.id,
        status=TransactionStatus(row.changed_status or row.status),
        postings=tuple(legs),
        expires_at=row.expires_at,
        description=row.description,
        external_ref=row.external_ref,
        reverses=row.reverses,
        reversed_by=row.reversed_by,
        posted_amount_minor=row.posted_amount_minor,
        created_at=row.created_at,
        status_changed_at=row.changed_at,
    )


def _facts(transaction: Transaction) -> TransactionFacts:
    return TransactionFacts(
        id=transaction.id,
        status=transaction.status,
        legs=transaction.postings,
        expires_at=transaction.expires_at,
        posted_amount_minor=transaction.posted_amount_minor,
        reversed_by=transaction.reversed_by,
    )


async def _change_status(
    session: AsyncSession, transaction_id: str, command: domain.Post | domain.Void | domain.Expire
) -> Transaction:
    """Post, void or expire a pending transaction.

    Deleting its `open_holds` row is the lock that serializes these three: a second
    writer waits here, then finds no hold and the status the first one left.
    """
    taken = (
        await session.execute(
            text("DELETE FROM ledger.open_holds WHERE transaction_id = :id RETURNING 1"),
            {"id": transaction_id},
        )
    ).first()
    original = await get_transaction(session, transaction_id)
    if taken is None and original.status is TransactionStatus.PENDING:
        raise InvariantViolation("ledger.open_hold", f"pending {transaction_id} has no hold row")
    change = domain.transition(_facts(original), command, _now())
    posted_amount = change.posted_amount_minor
    entry_id = _new_id("jrn")
    changed_at = _now()
    await session.execute(
        text(
            """
            INSERT INTO ledger.transaction_status_changes
                (transaction_id, status, posted_amount_minor, entry_id, occurred_at)
            VALUES (:id, :status, :amount, :entry_id, :occurred_at)
            """
        ),
        {
            "id": transaction_id,
            "status": str(change.status),
            "amount": posted_amount,
            "entry_id": entry_id,
            "occurred_at": changed_at,
        },
    )
    when = chain.format_time(changed_at)
    if change.status is TransactionStatus.POSTED:
        await outbox.emit(
            session,
            events.LedgerTransactionPosted(transaction_id, _lines(change.legs), None, when),
        )
    elif change.status is TransactionStatus.VOIDED:
        await outbox.emit(session, events.LedgerTransactionVoided(transaction_id, when))
    else:
        await outbox.emit(session, events.LedgerTransactionExpired(transaction_id, when))
    if change.journal_kind is None:
        raise InvariantViolation("ledger.journal_kind", "a status change is journaled")
    draft = journal.EntryDraft(
        transaction_id=transaction_id,
        entry_id=entry_id,
        kind=change.journal_kind,
        detail=journal.change_detail(change.status, posted_amount),
        movements=change.movements,
    )
    await journal.apply_entries(session, [draft])
    return Transaction(
        id=original.id,
        status=change.status,
        postings=original.postings,
        expires_at=original.expires_at,
        description=original.description,
        external_ref=original.external_ref,
        reverses=original.reverses,
        reversed_by=None,
        posted_amount_minor=posted_amount,
        created_at=original.created_at,
        status_changed_at=changed_at,
    )


async def post_transaction(
    session: AsyncSession, transaction_id: str, amount_minor: int | None
) -> Transaction:
    return await _change_status(session, transaction_id, domain.Post(amount_minor))


async def void_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    return await _change_status(session, transaction_id, domain.Void())


async def expire_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    return await _change_status(session, transaction_id, domain.Expire())


async def reverse_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    # Concurrent reversals of one transaction queue on a transaction-scoped advisory lock:
    # a row lock (FOR UPDATE) would need UPDATE privilege on an append-only table, which
    # the service role does not hold (app/platform/roles.py).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:id, 0))"), {"id": transaction_id}
    )
    locked = (
        await session.execute(
            text("SELECT id FROM ledger.transactions WHERE id = :id"), {"id": transaction_id}
        )
    ).first()
    if locked is None:
        raise TransactionNotFoundError(f"no transaction {transaction_id}")
    original = await get_transaction(session, transaction_id)
    mirror = domain.transition(_facts(original), domain.Reverse(), _now())
    return await create_transaction(
        session,
        legs=mirror.legs,
        status=mirror.status,
        expires_at=None,
        description=f"reversal of {transaction_id}",
        external_ref=original.external_ref,
        reverses=transaction_id,
    )
