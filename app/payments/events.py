"""Public, versioned payment integration events, written to the outbox with their effect.

Each is emitted in the transaction that changes the payment, so its payload is the
snapshot at commit. `owner` (the creating client) lets the relay deliver it only to that
client's webhook endpoints. The merchant-facing type is `EVENT_TYPE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from app.platform.events import Event


@dataclass(frozen=True, slots=True)
class _PaymentEvent(Event):
    """The payment's snapshot at commit: every payment event carries the same fields."""

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


@dataclass(frozen=True, slots=True)
class PaymentCaptured(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.captured"


@dataclass(frozen=True, slots=True)
class PaymentVoided(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.voided"


@dataclass(frozen=True, slots=True)
class PaymentDeclined(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.declined"


@dataclass(frozen=True, slots=True)
class PaymentFailed(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.failed"


@dataclass(frozen=True, slots=True)
class PaymentHeldForReview(_PaymentEvent):
    EVENT_TYPE: ClassVar[str] = "payment.pending_review"


@dataclass(frozen=True, slots=True)
class PaymentRefunded(_PaymentEvent):
    """A refund succeeded; `refund_id` and `refund_amount_minor` name it."""

    EVENT_TYPE: ClassVar[str] = "payment.refunded"
    refund_id: str = ""
    refund_amount_minor: int = 0


@dataclass(frozen=True, slots=True)
class _PayoutEvent(Event):
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
class PayoutPaid(_PayoutEvent):
    EVENT_TYPE: ClassVar[str] = "payout.paid"


@dataclass(frozen=True, slots=True)
class PayoutFailed(_PayoutEvent):
    EVENT_TYPE: ClassVar[str] = "payout.failed"


# Every event above reaches merchants: a webhook endpoint subscribes to these types (or "*").
MERCHANT_EVENTS: tuple[type[Event], ...] = (
    PaymentAuthorized,
    PaymentCaptured,
    PaymentVoided,
    PaymentDeclined,
    PaymentFailed,
    PaymentHeldForReview,
    PaymentRefunded,
    PayoutPaid,
    PayoutFailed,
)
