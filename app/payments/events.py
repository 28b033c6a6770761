"""Public, versioned payment integration events, written to the outbox with their effect.

Each is emitted in the transaction that changes the payment, so its payload is the
snapshot at commit. `owner` (the creating client) lets the relay deliver it only to that
client's webhook endpoints. The merchant-facing type is `EVENT_TYPE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class _PaymentEvent:
    payment_id: str
    owner: str
    status: str
    amount_minor: int
    captured_minor: int
    refunded_minor: int
    currency: str
    provider: str | None
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.payment_id


@dataclass(frozen=True, slots=True)
class PaymentAuthorized(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.authorized"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentCaptured(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.captured"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentVoided(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.voided"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentDeclined(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.declined"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentFailed(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.failed"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentHeldForReview(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.pending_review"
    EVENT_VERSION: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class PaymentRefunded(_PaymentEvent):
    """A refund succeeded; `refund_id` and `refund_amount_minor` name it."""

    EVENT_TYPE: ClassVar[str] = "payment.refunded"
    EVENT_VERSION: ClassVar[int] = 1
    refund_id: str = ""
    refund_amount_minor: int = 0


@dataclass(frozen=True, slots=True)
class PayoutPaid:
    EVENT_TYPE: ClassVar[str] = "payout.paid"
    EVENT_VERSION: ClassVar[int] = 1
    payout_id: str
    owner: str
    account_id: str
    amount_minor: int
    currency: str
    provider: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.payout_id


@dataclass(frozen=True, slots=True)
class PayoutFailed:
    EVENT_TYPE: ClassVar[str] = "payout.failed"
    EVENT_VERSION: ClassVar[int] = 1
    payout_id: str
    owner: str
    account_id: str
    amount_minor: int
    currency: str
    provider: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        return self.payout_id
