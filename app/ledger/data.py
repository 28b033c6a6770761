"""Frozen read models the ledger hands out (re-exported by api.py). No rules, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from app.ledger.domain import Direction, Effect, Leg, TransactionStatus


@dataclass(frozen=True, slots=True)
class Balances:
    posted_minor: int
    pending_debits_minor: int
    pending_credits_minor: int
    available_minor: int


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    code: str
    currency: str
    normal_balance: Direction
    overdraft_limit_minor: int | None
    customer_id: str | None
    metadata: Mapping[str, str]
    created_at: datetime
    balances: Balances
    as_of: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    status: TransactionStatus
    postings: tuple[Leg, ...]
    expires_at: datetime | None
    description: str | None
    external_ref: str | None
    reverses: str | None
    reversed_by: str | None
    posted_amount_minor: int | None
    created_at: datetime
    status_changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class Entry:
    """One posting row of an account, with the running posted balance after it."""

    id: str
    transaction_id: str
    direction: Direction
    amount_minor: int
    currency: str
    effect: Effect
    created_at: datetime
    balance_after_minor: int


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: tuple[Entry, ...]
    next_after_id: int | None


@dataclass(frozen=True, slots=True)
class BadEntry:
    seq: int
    entry_id: str | None
    transaction_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    entries_checked: int
    first_bad_entry: BadEntry | None
