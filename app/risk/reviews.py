"""The manual review queue: payments the policy (or its absence) held for a person.

Deciding a review closes it and publishes `RiskReviewDecided` through the outbox in the
same transaction; the payment saga consumes it to resume (approve) or decline (reject).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import outbox
from app.platform.utc import rfc3339
from app.risk import domain
from app.risk.domain import ReviewAlreadyDecidedError, ReviewNotFoundError, ReviewVerdict
from app.risk.events import RiskReviewDecided

MAX_REASON_LENGTH = 500


@dataclass(frozen=True, slots=True)
class Review:
    id: str
    payment_id: str
    client_id: str
    customer_id: str
    amount_minor: int
    currency: str
    reasons: tuple[str, ...]
    decision_id: str | None  # OPA's decision id of the assessment that opened the review
    status: str
    decision_reason: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewPage:
    reviews: tuple[Review, ...]
    next_after: tuple[datetime, str] | None


_COLUMNS = """
    id, payment_id, client_id, customer_id, amount_minor, currency, reasons, decision_id,
    status, decision_reason, decided_by, decided_at, created_at
"""


def _review(row: Any) -> Review:
    return Review(
        id=row.id,
        payment_id=row.payment_id,
        client_id=row.client_id,
        customer_id=row.customer_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        reasons=tuple(row.reasons),
        decision_id=row.decision_id,
        status=row.status,
        decision_reason=row.decision_reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        created_at=row.created_at,
    )


async def get(session: AsyncSession, review_id: str, *, lock: bool = False) -> Review:
    sql = f"SELECT {_COLUMNS} FROM risk.reviews WHERE id = :id"  # noqa: S608 - fixed columns
    row = (
        await session.execute(text(sql + (" FOR UPDATE" if lock else "")), {"id": review_id})
    ).first()
    if row is None:
        raise ReviewNotFoundError(f"no review {review_id}")
    return _review(row)


async def for_payment(session: AsyncSession, payment_id: str) -> Review | None:
    sql = f"SELECT {_COLUMNS} FROM risk.reviews WHERE payment_id = :payment_id"  # noqa: S608
    row = (await session.execute(text(sql), {"payment_id": payment_id})).first()
    return _review(row) if row is not None else None


async def list_page(
    session: AsyncSession,
    *,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> ReviewPage:
    """Oldest first (the queue's order of work), keyset-paginated on (created_at, id)."""
    clauses = []
    params: dict[str, Any] = {"limit": limit + 1}
    if status is not None:
        clauses.append("status = :status")
        params["status"] = status
    if after is not None:
        clauses.append("(created_at, id) > (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {_COLUMNS} FROM risk.reviews {where} "  # noqa: S608 - fixed clauses only
        "ORDER BY created_at, id LIMIT :limit"
    )
    rows = (await session.execute(text(sql), params)).all()
    reviews = tuple(_review(row) for row in rows[:limit])
    next_after = (reviews[-1].created_at, reviews[-1].id) if len(rows) > limit else None
    return ReviewPage(reviews=reviews, next_after=next_after)


async def decide(
    session: AsyncSession,
    review_id: str,
    *,
    verdict: ReviewVerdict,
    reason: str,
    decided_by: str,
) -> Review:
    """Close an open review and publish `RiskReviewDecided` in the same transaction.

    Raises ReviewNotFoundError, ReviewAlreadyDecidedError (it was decided before).
    """
    review = await get(session, review_id, lock=True)
    if review.status != "open":
        raise ReviewAlreadyDecidedError(f"review {review_id} is already {review.status}")
    moment = datetime.now(UTC)
    row = (
        await session.execute(
            text(
                f"""
                UPDATE risk.reviews
                SET status = :status, decision_reason = :reason, decided_by = :decided_by,
                    decided_at = :decided_at
                WHERE id = :id
                RETURNING {_COLUMNS}
                """  # noqa: S608 - fixed columns
            ),
            {
                "id": review_id,
                "status": domain.review_status(verdict),
                "reason": reason,
                "decided_by": decided_by,
                "decided_at": moment,
            },
        )
    ).one()
    await outbox.emit(
        session,
        RiskReviewDecided(
            review_id=review.id,
            payment_id=review.payment_id,
            customer_id=review.customer_id,
            decision=verdict,
            reason=reason,
            decided_by=decided_by,
            occurred_at=rfc3339(moment),
        ),
    )
    return _review(row)
