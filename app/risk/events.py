"""Public, versioned risk integration events, written to the outbox with their effect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from app.platform.events import Event


@dataclass(frozen=True, slots=True)
class RiskReviewDecided(Event):
    """A reviewer decided a payment held for review.

    `decision` is `approve` (the saga resumes: authorize with the provider) or `reject`
    (the saga declines the payment). Emitted in the transaction that closes the review, so
    it exists exactly when the decision does.
    """

    EVENT_TYPE: ClassVar[str] = "risk.review.decided"
    review_id: str
    payment_id: str
    customer_id: str
    decision: str  # "approve" | "reject"
    reason: str
    decided_by: str
    occurred_at: str

    @property
    def aggregate_id(self) -> str:
        # Keyed by payment, so a consumer sees every event about one payment in order.
        return self.payment_id
