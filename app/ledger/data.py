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
class NewTransaction:
    """One transaction to create (an item of a batch, or a single create)."""

    legs: tuple[Leg, ...]
    status: str = TransactionStatus.POSTED
    expires_at: datetime | None = None
    description: str | None = None
    external_ref: str | None = None
    reverses: str | None = None


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
    """The hash chain from some seq on. `next_from_seq` is where a check cut short by its
    limit goes on (None when it reached the head or found a bad entry)."""

    ok: bool
    entries_checked: int
    first_bad_entry: BadEntry | None
    next_from_seq: int | None = None


@dataclass(frozen=True, slots=True)
class BadBalance:
    """An account whose `ledger.balances` row disagrees with the sum of its postings."""

    account_id: str
    stored: Balances
    recomputed: Balances


@dataclass(frozen=True, slots=True)
class BalanceReport:
    """Accounts after some id, each recomputed from its postings. `next_after_account` is
    where a check cut short by its limit goes on."""

    ok: bool
    accounts_checked: int
    first_bad_balance: BadBalance | None
    next_after_account: str | None = None


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The chain's last entry: what the worker anchors in the evidence log."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AnchorReport:
    """The live chain against the latest head anchored in the evidence log.

    `status` is "consistent", "none" (nothing anchored yet, or no evidence service), or a
    contradiction: "anchored_entry_missing" (the chain is shorter than the anchor) or
    "hash_mismatch" (the entry at the anchored seq has another hash).
    """

    status: str
    anchored: ChainHead | None
    record_id: str | None = None
    live_hash: str | None = None

    @property
    def contradicted(self) -> bool:
        return self.status not in ("consistent", "none")


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """`GET /v1/ledger/verify`: the chain, the balances, the anchor, and whether the
    chain and balance checks were finished."""

    chain: ChainReport
    balances: BalanceReport
    anchor: AnchorReport = AnchorReport("none", None)

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.balances.ok and not self.anchor.contradicted

    @property
    def complete(self) -> bool:
        return self.chain.next_from_seq is None and self.balances.next_after_account is None
