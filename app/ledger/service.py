"""Ledger use cases. Each runs inside the caller's database transaction.

Locking protocol (every writer follows it, so there is no deadlock cycle):
1. the pending transaction's `open_holds` row (post, void, expire) or the original
   transaction row (reverse);
2. the `balances` rows of every account touched, in sorted account-id order;
3. last, and held only for the chain append and the COMMIT (`db.at_commit`), the single
   `chain_head` row that makes the hash chain linear.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ledger import domain, events
from app.ledger.domain import (
    Account,
    AccountNotFoundError,
    AccountState,
    Applied,
    BadEntry,
    Balances,
    ChainReport,
    DuplicateAccountCodeError,
    Entry,
    EntryPage,
    InvalidStateError,
    Leg,
    Movement,
    PartialPostUnsupportedError,
    Transaction,
    TransactionExpiredError,
    TransactionNotFoundError,
    UnknownAccountError,
)
from app.platform import outbox
from app.platform.db import at_commit, ensure_month_partitions, run_in_transaction
from app.platform.errors import InvariantViolation, ValidationError

VERIFY_BATCH_SIZE = 500
MAX_VERIFY_ENTRIES = 10_000_000
POSTINGS_MONTHS_AHEAD = 3


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _now() -> datetime:
    return datetime.now(UTC)


# ---- accounts ---------------------------------------------------------------------------


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
    account_id = _new_id("acc")
    now = _now()
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
            occurred_at=domain.format_time(now),
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


# ---- locking and writing ----------------------------------------------------------------


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
# A new transaction's rows (and its hold, when pending) go in with the account locks, in
# one round trip: they do not depend on the balances, and a refusal later rolls them back
# with everything else.
_INSERT_TRANSACTION_AND_LOCK_ACCOUNTS = text(
    """
    WITH created AS (
        INSERT INTO ledger.transactions
            (id, entry_id, status, expires_at, description, external_ref, reverses,
             posting_count, created_at)
        VALUES (:id, :entry_id, :status, :expires_at, :description, :external_ref,
                :reverses, :posting_count, :created_at)
        RETURNING id, expires_at
    ), held AS (
        INSERT INTO ledger.open_holds (transaction_id, expires_at)
        SELECT id, expires_at FROM created WHERE CAST(:holds AS boolean)
    )
    SELECT a.id, a.currency, a.normal_balance, a.overdraft_limit_minor,
           b.posted_minor, b.pending_debits_minor, b.pending_credits_minor
    FROM ledger.balances b JOIN ledger.accounts a ON a.id = b.account_id
    WHERE b.account_id = ANY(:ids)
    ORDER BY b.account_id
    FOR UPDATE OF b
    """
)


async def _lock_accounts(
    session: AsyncSession,
    account_ids: Iterable[str],
    *,
    new_transaction: Mapping[str, Any] | None = None,
) -> dict[str, AccountState]:
    """Lock the accounts' balance rows in id order; insert `new_transaction` on the way."""
    wanted = sorted(set(account_ids))
    if new_transaction is None:
        rows = (await session.execute(_LOCK_ACCOUNTS, {"ids": wanted})).all()
    else:
        rows = (
            await session.execute(
                _INSERT_TRANSACTION_AND_LOCK_ACCOUNTS, {**new_transaction, "ids": wanted}
            )
        ).all()
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


def _posting_fields(movement: Movement, created_at: datetime) -> dict[str, Any]:
    return {
        "leg": movement.leg,
        "account_id": movement.account_id,
        "direction": movement.direction,
        "amount_minor": movement.amount_minor,
        "currency": movement.currency,
        "effect": movement.effect,
        "created_at": created_at,
    }


_MOVE_AND_POST = text(
    """
    WITH moved AS (
        UPDATE ledger.balances b
        SET posted_minor = v.posted, pending_debits_minor = v.debits,
            pending_credits_minor = v.credits, updated_at = :occurred_at
        FROM unnest(CAST(:b_ids AS text[]), CAST(:b_posted AS numeric[]),
                    CAST(:b_debits AS numeric[]), CAST(:b_credits AS numeric[]))
             AS v(id, posted, debits, credits)
        WHERE b.account_id = v.id
        RETURNING 1
    ), written AS (
        INSERT INTO ledger.postings
            (created_at, entry_id, transaction_id, leg, account_id, direction,
             amount_minor, currency, effect, balance_after_minor)
        SELECT :occurred_at, :id, :transaction_id, v.leg, v.account_id, v.direction,
               v.amount_minor, v.currency, v.effect, v.balance_after
        FROM unnest(CAST(:p_legs AS smallint[]), CAST(:p_accounts AS text[]),
                    CAST(:p_directions AS text[]), CAST(:p_amounts AS bigint[]),
                    CAST(:p_currencies AS text[]), CAST(:p_effects AS text[]),
                    CAST(:p_after AS numeric[]))
             WITH ORDINALITY
             AS v(leg, account_id, direction, amount_minor, currency, effect, balance_after, n)
        ORDER BY v.n
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM moved) AS moved, (SELECT count(*) FROM written) AS written
    """
)
_APPEND_TO_CHAIN = text(
    """
    WITH old AS (
        SELECT last_seq, last_hash FROM ledger.chain_head WHERE id = 1 FOR UPDATE
    ), head AS (
        UPDATE ledger.chain_head h
        SET last_seq = old.last_seq + 1,
            last_hash = encode(sha256(decode(old.last_hash, 'hex') || :canonical), 'hex')
        FROM old
        WHERE h.id = 1
        RETURNING h.last_seq, h.last_hash, old.last_hash AS prev_hash
    )
    INSERT INTO ledger.journal_entries
        (seq, id, transaction_id, kind, occurred_at, prev_hash, hash)
    SELECT last_seq, :id, :transaction_id, :kind, :occurred_at, prev_hash, last_hash
    FROM head
    RETURNING seq
    """
)


async def _write_entry(
    session: AsyncSession,
    *,
    transaction_id: str,
    entry_id: str,
    kind: str,
    occurred_at: datetime,
    detail: Mapping[str, Any],
    movements: Sequence[Movement],
    applied: Applied,
) -> None:
    """Insert the postings, move the balances and append the entry to the hash chain.

    The postings and balances are one statement (the account rows are locked by the
    caller). The chain append runs at commit (`db.at_commit`): the chain head row
    serializes every journal write of the whole ledger, so it is taken last, after the
    caller's audit record and idempotency completion, and held for that one statement
    plus the COMMIT. Entries are thereby chained in commit order. hash = sha256(prev_hash
    || JCS(entry)) is computed by PostgreSQL over the exact canonical bytes we send, and
    `verify` recomputes it in Python.
    """
    if len(applied.balance_after_minor) != len(movements):
        raise InvariantViolation("ledger.running_balance", "one running balance per posting")
    touched = sorted({movement.account_id for movement in movements})
    canonical = domain.canonical_entry(
        entry_id=entry_id,
        transaction_id=transaction_id,
        kind=kind,
        occurred_at=occurred_at,
        detail=detail,
        postings=[_posting_fields(movement, occurred_at) for movement in movements],
    )
    row = (
        await session.execute(
            _MOVE_AND_POST,
            {
                "b_ids": touched,
                "b_posted": [str(applied.balances[a].posted_minor) for a in touched],
                "b_debits": [str(applied.balances[a].pending_debits_minor) for a in touched],
                "b_credits": [str(applied.balances[a].pending_credits_minor) for a in touched],
                "p_legs": [m.leg for m in movements],
                "p_accounts": [m.account_id for m in movements],
                "p_directions": [m.direction for m in movements],
                "p_amounts": [m.amount_minor for m in movements],
                "p_currencies": [m.currency for m in movements],
                "p_effects": [m.effect for m in movements],
                "p_after": [str(after) for after in applied.balance_after_minor],
                "id": entry_id,
                "transaction_id": transaction_id,
                "occurred_at": occurred_at,
            },
        )
    ).one()
    if row.moved != len(touched) or row.written != len(movements):
        raise InvariantViolation("ledger.entry_written", "balances or postings went missing")
    chained = {
        "canonical": canonical,
        "id": entry_id,
        "transaction_id": transaction_id,
        "kind": kind,
        "occurred_at": occurred_at,
    }

    async def append_to_chain(session: AsyncSession) -> None:
        if (await session.execute(_APPEND_TO_CHAIN, chained)).first() is None:
            raise InvariantViolation("ledger.chain_appended", "the chain head row is missing")

    await at_commit(session, append_to_chain)


def _lines(legs: Iterable[Leg]) -> tuple[events.PostingLine, ...]:
    return tuple(
        events.PostingLine(leg.account_id, leg.direction, leg.amount_minor, leg.currency)
        for leg in legs
    )


def _creation_detail(
    status: str,
    expires_at: datetime | None,
    description: str | None,
    external_ref: str | None,
    reverses: str | None,
) -> dict[str, Any]:
    return {
        "status": status,
        "expires_at": expires_at,
        "description": description,
        "external_ref": external_ref,
        "reverses": reverses,
    }


def _change_detail(status: str, posted_amount_minor: int | None) -> dict[str, Any]:
    return {"status": status, "posted_amount_minor": posted_amount_minor}


# ---- transactions -----------------------------------------------------------------------


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
    domain.check_legs(legs)
    if status not in ("posted", "pending"):
        raise ValidationError("status must be posted or pending")
    received_at = _now()
    domain.check_expiry(status, expires_at, received_at)
    transaction_id = _new_id("txn")
    entry_id = _new_id("jrn")
    new_transaction = {
        "id": transaction_id,
        "entry_id": entry_id,
        "status": status,
        "expires_at": expires_at,
        "description": description,
        "external_ref": external_ref,
        "reverses": reverses,
        "posting_count": len(legs),
        "created_at": received_at,
        "holds": status == "pending",
    }
    when = domain.format_time(received_at)
    if status == "posted":
        await outbox.emit(
            session, events.LedgerTransactionPosted(transaction_id, _lines(legs), reverses, when)
        )
    else:
        hold_until = expires_at
        if hold_until is None:
            raise InvariantViolation("ledger.pending_expiry", "a hold without expires_at")
        await outbox.emit(
            session,
            events.LedgerTransactionPending(
                transaction_id, _lines(legs), domain.format_time(hold_until), when
            ),
        )
    accounts = await _lock_accounts(
        session, (leg.account_id for leg in legs), new_transaction=new_transaction
    )
    effect: domain.Effect = "posted" if status == "posted" else "hold"
    movements = [
        Movement(index, leg.account_id, leg.direction, leg.amount_minor, leg.currency, effect)
        for index, leg in enumerate(legs)
    ]
    applied = domain.apply_movements(accounts, movements)
    # Taken under the locks, so postings of one account are time-ordered like their ids
    # and an as_of sum always matches some running balance.
    occurred_at = _now()
    await _write_entry(
        session,
        transaction_id=transaction_id,
        entry_id=entry_id,
        kind="create",
        occurred_at=occurred_at,
        detail=_creation_detail(status, expires_at, description, external_ref, reverses),
        movements=movements,
        applied=applied,
    )
    return Transaction(
        id=transaction_id,
        status=status,
        postings=tuple(legs),
        expires_at=expires_at,
        description=description,
        external_ref=external_ref,
        reverses=reverses,
        reversed_by=None,
        posted_amount_minor=None,
        created_at=received_at,
        status_changed_at=None,
    )


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
        status=row.changed_status or row.status,
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


async def _take_hold(session: AsyncSession, transaction_id: str) -> datetime:
    """Delete (and so lock) the open hold, or say why the transaction has none."""
    taken = (
        await session.execute(
            text(
                """
                DELETE FROM ledger.open_holds WHERE transaction_id = :id
                RETURNING expires_at
                """
            ),
            {"id": transaction_id},
        )
    ).first()
    if taken is not None:
        expires_at: datetime = taken.expires_at
        return expires_at
    current = await get_transaction(session, transaction_id)
    if current.status == "expired":
        raise TransactionExpiredError(f"transaction {transaction_id} expired")
    raise InvalidStateError(
        f"transaction {transaction_id} is {current.status}, not pending", status=current.status
    )


async def _resolve_hold(
    session: AsyncSession,
    transaction_id: str,
    *,
    new_status: str,
    amount_minor: int | None,
) -> Transaction:
    """Post, void or expire a pending transaction. The hold row is already taken."""
    original = await get_transaction(session, transaction_id)
    legs = original.postings
    if amount_minor is not None:
        domain.check_amount(amount_minor)
        if len(legs) != 2:
            raise PartialPostUnsupportedError(
                f"transaction {transaction_id} has {len(legs)} postings; partial post needs 2"
            )
        if amount_minor > legs[0].amount_minor:
            raise ValidationError("amount_minor exceeds the pending amount")
    movements: list[Movement] = []
    for index, leg in enumerate(legs):
        movements.append(
            Movement(
                index, leg.account_id, leg.direction, leg.amount_minor, leg.currency, "release"
            )
        )
        if new_status == "posted":
            posted_amount = leg.amount_minor if amount_minor is None else amount_minor
            movements.append(
                Movement(
                    index, leg.account_id, leg.direction, posted_amount, leg.currency, "posted"
                )
            )
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
            "status": new_status,
            "amount": amount_minor,
            "entry_id": entry_id,
            "occurred_at": changed_at,
        },
    )
    when = domain.format_time(changed_at)
    if new_status == "posted":
        posted_legs = [
            Leg(m.account_id, m.direction, m.amount_minor, m.currency)
            for m in movements
            if m.effect == "posted"
        ]
        await outbox.emit(
            session,
            events.LedgerTransactionPosted(transaction_id, _lines(posted_legs), None, when),
        )
    elif new_status == "voided":
        await outbox.emit(session, events.LedgerTransactionVoided(transaction_id, when))
    else:
        await outbox.emit(session, events.LedgerTransactionExpired(transaction_id, when))
    # As in create_transaction: balance-independent rows first, then the account locks.
    accounts = await _lock_accounts(session, (leg.account_id for leg in legs))
    applied = domain.apply_movements(accounts, movements)
    kind = {"posted": "post", "voided": "void", "expired": "expire"}[new_status]
    await _write_entry(
        session,
        transaction_id=transaction_id,
        entry_id=entry_id,
        kind=kind,
        occurred_at=_now(),
        detail=_change_detail(new_status, amount_minor),
        movements=movements,
        applied=applied,
    )
    return Transaction(
        id=original.id,
        status=new_status,
        postings=legs,
        expires_at=original.expires_at,
        description=original.description,
        external_ref=original.external_ref,
        reverses=original.reverses,
        reversed_by=None,
        posted_amount_minor=amount_minor,
        created_at=original.created_at,
        status_changed_at=changed_at,
    )


async def post_transaction(
    session: AsyncSession, transaction_id: str, amount_minor: int | None
) -> Transaction:
    expires_at = await _take_hold(session, transaction_id)
    if expires_at <= _now():
        raise TransactionExpiredError(f"transaction {transaction_id} expired at {expires_at}")
    return await _resolve_hold(
        session, transaction_id, new_status="posted", amount_minor=amount_minor
    )


async def void_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    expires_at = await _take_hold(session, transaction_id)
    if expires_at <= _now():
        raise TransactionExpiredError(f"transaction {transaction_id} expired at {expires_at}")
    return await _resolve_hold(session, transaction_id, new_status="voided", amount_minor=None)


async def reverse_transaction(session: AsyncSession, transaction_id: str) -> Transaction:
    locked = (
        await session.execute(
            text("SELECT id FROM ledger.transactions WHERE id = :id FOR UPDATE"),
            {"id": transaction_id},
        )
    ).first()
    if locked is None:
        raise TransactionNotFoundError(f"no transaction {transaction_id}")
    original = await get_transaction(session, transaction_id)
    if original.status != "posted":
        raise InvalidStateError(
            f"transaction {transaction_id} is {original.status}; only posted ones reverse",
            status=original.status,
        )
    if original.reversed_by is not None:
        raise InvalidStateError(
            f"transaction {transaction_id} was already reversed by {original.reversed_by}",
            status=original.status,
        )
    rows = (
        await session.execute(
            text(
                """
                SELECT account_id, direction, amount_minor, currency
                FROM ledger.postings
                WHERE transaction_id = :id AND effect = 'posted'
                ORDER BY id
                """
            ),
            {"id": transaction_id},
        )
    ).all()
    mirror = [
        Leg(
            row.account_id,
            "credit" if row.direction == "debit" else "debit",
            row.amount_minor,
            row.currency,
        )
        for row in rows
    ]
    return await create_transaction(
        session,
        legs=mirror,
        status="posted",
        expires_at=None,
        description=f"reversal of {transaction_id}",
        external_ref=original.external_ref,
        reverses=transaction_id,
    )


# ---- workers ----------------------------------------------------------------------------


async def expire_holds(sessions: async_sessionmaker[AsyncSession], *, max_holds: int) -> int:
    """Expire up to `max_holds` overdue holds, one short transaction each."""
    expired = 0
    for _ in range(max_holds):

        async def one(session: AsyncSession) -> bool:
            taken = (
                await session.execute(
                    text(
                        """
                        DELETE FROM ledger.open_holds
                        WHERE transaction_id = (
                            SELECT transaction_id FROM ledger.open_holds
                            WHERE expires_at <= :now
                            ORDER BY expires_at
                            LIMIT 1
                            FOR UPDATE SKIP LOCKED
                        )
                        RETURNING transaction_id
                        """
                    ),
                    {"now": _now()},
                )
            ).first()
            if taken is None:
                return False
            await _resolve_hold(
                session, taken.transaction_id, new_status="expired", amount_minor=None
            )
            return True

        if not await run_in_transaction(sessions, one):
            break
        expired += 1
    return expired


async def ensure_partitions(session: AsyncSession, months_ahead: int) -> int:
    return await ensure_month_partitions(session, "ledger.postings", months_ahead)


# ---- the hash chain ---------------------------------------------------------------------


async def verify_chain(
    session: AsyncSession, *, batch_size: int = VERIFY_BATCH_SIZE
) -> ChainReport:
    """Recompute every entry from the stored rows and compare with the chain."""
    head = (
        await session.execute(
            text("SELECT last_seq, last_hash FROM ledger.chain_head WHERE id = 1")
        )
    ).one()
    last_seq = min(int(head.last_seq), MAX_VERIFY_ENTRIES)
    running = domain.GENESIS_HASH
    checked = 0
    expected_seq = 1
    while expected_seq <= last_seq:
        entries = (
            await session.execute(
                text(
                    """
                    SELECT seq, id, transaction_id, kind, occurred_at, prev_hash, hash
                    FROM ledger.journal_entries
                    WHERE seq >= :from AND seq <= :to
                    ORDER BY seq
                    """
                ),
                {"from": expected_seq, "to": min(last_seq, expected_seq + batch_size - 1)},
            )
        ).all()
        if not entries:
            return ChainReport(False, checked, BadEntry(expected_seq, None, None, "missing"))
        ids = [entry.id for entry in entries]
        postings: dict[str, list[dict[str, Any]]] = {entry_id: [] for entry_id in ids}
        for row in (
            await session.execute(
                text(
                    """
                    SELECT entry_id, leg, account_id, direction, amount_minor, currency, effect,
                           created_at
                    FROM ledger.postings WHERE entry_id = ANY(:ids) ORDER BY id
                    """
                ),
                {"ids": ids},
            )
        ).all():
            postings[row.entry_id].append(
                {
                    "leg": row.leg,
                    "account_id": row.account_id,
                    "direction": row.direction,
                    "amount_minor": row.amount_minor,
                    "currency": row.currency,
                    "effect": row.effect,
                    "created_at": row.created_at,
                }
            )
        details: dict[str, dict[str, Any]] = {}
        for row in (
            await session.execute(
                text(
                    """
                    SELECT entry_id, status, expires_at, description, external_ref, reverses
                    FROM ledger.transactions WHERE entry_id = ANY(:ids)
                    """
                ),
                {"ids": ids},
            )
        ).all():
            details[row.entry_id] = _creation_detail(
                row.status, row.expires_at, row.description, row.external_ref, row.reverses
            )
        for row in (
            await session.execute(
                text(
                    """
                    SELECT entry_id, status, posted_amount_minor
                    FROM ledger.transaction_status_changes WHERE entry_id = ANY(:ids)
                    """
                ),
                {"ids": ids},
            )
        ).all():
            details[row.entry_id] = _change_detail(row.status, row.posted_amount_minor)
        for entry in entries:
            bad = _check_entry(entry, expected_seq, running, details, postings)
            if bad is not None:
                return ChainReport(False, checked, bad)
            running = entry.hash
            checked += 1
            expected_seq += 1
    if last_seq == int(head.last_seq) and running != head.last_hash:
        return ChainReport(False, checked, BadEntry(last_seq, None, None, "head_mismatch"))
    return ChainReport(True, checked, None)


def _check_entry(
    entry: Any,
    expected_seq: int,
    running: str,
    details: Mapping[str, dict[str, Any]],
    postings: Mapping[str, list[dict[str, Any]]],
) -> BadEntry | None:
    def bad(reason: str) -> BadEntry:
        return BadEntry(entry.seq, entry.id, entry.transaction_id, reason)

    if entry.seq != expected_seq:
        return BadEntry(expected_seq, None, None, "missing")
    if entry.prev_hash != running:
        return bad("prev_hash_mismatch")
    detail = details.get(entry.id)
    if detail is None:
        return bad("transaction_row_missing")
    canonical = domain.canonical_entry(
        entry_id=entry.id,
        transaction_id=entry.transaction_id,
        kind=entry.kind,
        occurred_at=entry.occurred_at,
        detail=detail,
        postings=postings.get(entry.id, []),
    )
    if domain.chain_hash(running, canonical) != entry.hash:
        return bad("hash_mismatch")
    return None
