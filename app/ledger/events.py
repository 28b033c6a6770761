"""Public, versioned ledger integration events, written to the outbox with their effect.

Each event is emitted in the same database transaction as the ledger change it reports,
so a consumer never sees an event for a change that rolled back, nor misses one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class PostingLine:
    """One posting as consumers see it: account, side, amount in minor units, currency."""

    account_id: str
    direction: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class LedgerAccountCreated:
    """An account was opened."""

    EVENT_TYPE: ClassVar[str] = "ledger.account.created"
    EVENT_VERSION: ClassVar[int] = 1
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
class LedgerTransactionPosted:
    """Postings moved posted balances: a posted transaction, a posted hold or a reversal."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.posted"
    EVENT_VERSION: ClassVar[int] = 1
    transaction_id: str
    postings: tuple[PostingLine, ...]
    reverses: str | None
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.transaction_id


@dataclass(frozen=True, slots=True)
class LedgerTransactionPending:
    """A hold was placed: pending postings reserve funds until posted, voided or expired."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.pending"
    EVENT_VERSION: ClassVar[int] = 1
    transaction_id: str
    postings: tuple[PostingLine, ...]
    expires_at: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.transaction_id


@dataclass(frozen=True, slots=True)
class LedgerTransactionVoided:
    """A hold was released by request; no posted balance moved."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.voided"
    EVENT_VERSION: ClassVar[int] = 1
    transaction_id: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.transaction_id


@dataclass(frozen=True, slots=True)
class LedgerTransactionExpired:
    """A hold passed its expires_at and the expiry worker released it."""

    EVENT_TYPE: ClassVar[str] = "ledger.transaction.expired"
    EVENT_VERSION: ClassVar[int] = 1
    transaction_id: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.transaction_id
