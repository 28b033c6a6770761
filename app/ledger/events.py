"""Public, versioned ledger integration events, written to the outbox with their effect.

Each event is emitted in the same database transaction as the ledger change it reports,
so a consumer never sees an event for a change that rolled back, nor misses one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from app.platform.events import Event


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One posting as consumers see it: account, side, amount in minor units, currency."""

    account_id: str
    direction: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class LedgerAccountCreated(Event):
    """An account was opened."""

    EVENT_TYPE: ClassVar[str] = "ledger.account.created"
    account_id: str
    code: str
    currency: str
    normal_balance: str
    customer_id: str | None
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.account_id


@dataclass(frozen=True, slots=True)
class _TransactionEvent(Event):
    transaction_id: str

    @property
    def aggregate_id(self) -> str:
        return self.transaction_id


@dataclass(frozen=True, slots=True)
class LedgerTransactionPosted(_TransactionEvent):
    """Postings moved posted balances: a posted transaction, a posted hold or a reversal."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.posted"
    postings: tuple[PostingLine, ...]
    reverses: str | None
    occurred_at: str


@dataclass(frozen=True, slots=True)
class LedgerTransactionPending(_TransactionEvent):
    """A hold was placed: pending postings reserve funds until posted, voided or expired."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.pending"
    postings: tuple[PostingLine, ...]
    expires_at: str
    occurred_at: str


@dataclass(frozen=True, slots=True)
class LedgerTransactionVoided(_TransactionEvent):
    """A hold was released by request; no posted balance moved."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.voided"
    occurred_at: str


@dataclass(frozen=True, slots=True)
class LedgerTransactionExpired(_TransactionEvent):
    """A hold passed its expires_at and the expiry worker released it."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.expired"
    occurred_at: str
