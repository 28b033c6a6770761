"""The risk domain's public door: assess a payment, and the manual review queue.

Every function takes the caller's `AsyncSession` and runs inside the caller's transaction.
The payment saga calls `assess_payment` in the transaction of its risk step, so the
velocity count, the review and the audit record land exactly when the step does.

Integration event: `app.risk.events.RiskReviewDecided`, emitted when a reviewer decides.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.platform.opa import Opa
from app.risk import assessments, reviews
from app.risk.assessments import PRUNE_BATCH_SIZE, RiskDecision, RiskInput
from app.risk.domain import (
    REASON_ENGINE_INVALID_ANSWER,
    REASON_ENGINE_TIMEOUT,
    REASON_ENGINE_UNAVAILABLE,
    VELOCITY_WINDOWS_S,
    Outcome,
    ReviewAlreadyDecidedError,
    ReviewNotFoundError,
    ReviewVerdict,
)
from app.risk.reviews import Review, ReviewPage

__all__ = [
    "PRUNE_BATCH_SIZE",
    "REASON_ENGINE_INVALID_ANSWER",
    "REASON_ENGINE_TIMEOUT",
    "REASON_ENGINE_UNAVAILABLE",
    "VELOCITY_WINDOWS_S",
    "Outcome",
    "Review",
    "ReviewAlreadyDecidedError",
    "ReviewNotFoundError",
    "ReviewPage",
    "ReviewVerdict",
    "RiskDecision",
    "RiskInput",
    "assess_payment",
    "decide_review",
    "get_review",
    "list_reviews",
    "prune_velocity",
    "review_for_payment",
]


async def assess_payment(
    session: AsyncSession,
    opa: Opa,
    risk_input: RiskInput,
    *,
    timeout_ms: int,
) -> RiskDecision:
    """Decide `approve`, `review` or `decline` for a payment, with reason codes.

    Reads the customer's country, KYC tier and age from identity and the velocity counters
    from PostgreSQL, asks `data.moneypath.risk.decision` within `timeout_ms`, counts the
    payment, opens a review when the outcome is `review`, and audits the decision with
    OPA's decision id. If OPA is slow, down or answers anything but the documented shape,
    the outcome is `review` (reason `risk_engine_timeout`, `risk_engine_unavailable` or
    `risk_engine_invalid_answer`): never `approve`.

    Assessing the same `payment_id` again counts it once and reuses its review.
    Raises CustomerNotFoundError (identity) when the customer does not exist.
    """
    return await assessments.assess(session, opa, risk_input, timeout_ms=timeout_ms)


async def prune_velocity(session: AsyncSession, *, batch: int = PRUNE_BATCH_SIZE) -> int:
    """Worker step: delete up to `batch` velocity rows older than the longest window
    (SKIP LOCKED, so several workers may run it); returns how many were deleted."""
    return await assessments.prune_velocity(session, batch=batch)


async def get_review(session: AsyncSession, review_id: str) -> Review:
    """Raises ReviewNotFoundError."""
    return await reviews.get(session, review_id)


async def review_for_payment(session: AsyncSession, payment_id: str) -> Review | None:
    """The review opened for a payment, if any."""
    return await reviews.for_payment(session, payment_id)


async def list_reviews(
    session: AsyncSession,
    *,
    status: str | None = "open",
    limit: int = 50,
    after: tuple[datetime, str] | None = None,
) -> ReviewPage:
    """Reviews oldest first, optionally of one status (`open`, `approved`, `rejected`)."""
    return await reviews.list_page(session, status=status, limit=limit, after=after)


async def decide_review(
    session: AsyncSession,
    review_id: str,
    *,
    verdict: ReviewVerdict,
    reason: str,
    decided_by: str,
) -> Review:
    """Approve or reject an open review and publish `RiskReviewDecided` to the outbox.

    Raises ReviewNotFoundError, ReviewAlreadyDecidedError.
    """
    return await reviews.decide(
        session, review_id, verdict=verdict, reason=reason, decided_by=decided_by
    )
