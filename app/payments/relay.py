"""The outbox relay: turns committed events into merchant deliveries and saga inputs.

Each pass claims, under `FOR UPDATE SKIP LOCKED`, only the oldest unpublished event of
each aggregate (`platform.outbox.claim_heads`), so one payment's events go out in commit
order even with several relays running. In the same transaction it:
- fans a `payment.*` / `payout.*` event out to the owner's subscribed webhook endpoints
  that existed when the event occurred, one delivery row each, whose body is the payload
  as snapshotted at commit (an endpoint registered later never receives older events, even
  when the relay was behind);
- applies a risk review decision to the payment held for review (approve: back to
  `pending`, and the saga authorizes it after commit; reject: `declined`);
- marks the events published.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import store
from app.payments.domain import PaymentEvent, PaymentStatus
from app.payments.saga import Runtime, emit_status, move
from app.payments.service import resume
from app.payments.webhook_delivery import event_body
from app.platform import outbox
from app.platform.errors import DomainError
from app.providers.api import ProviderUnavailableError

log = structlog.get_logger("moneypath.payments.relay")

MAX_EVENTS_PER_PASS = 100
REVIEW_DECIDED = "risk.review.decided"


@dataclass(frozen=True, slots=True)
class RelayReport:
    events: int
    deliveries: int
    reviews_applied: int


async def _fan_out(session: AsyncSession, event: outbox.StoredEvent) -> int:
    owner = event.payload.get("owner")
    if not isinstance(owner, str):
        return 0
    body = event_body(event.event_id, event.event_type, event.occurred_at, event.payload)
    made = await session.execute(
        text(
            """
            INSERT INTO payments.deliveries (endpoint_id, event_id, event_type, body)
            SELECT e.id, :event_id, :event_type, :body FROM payments.webhook_endpoints e
            WHERE e.owner = :owner AND e.enabled AND e.created_at <= :occurred_at
              AND (:event_type = ANY(e.event_types) OR '*' = ANY(e.event_types))
            ON CONFLICT (endpoint_id, event_id) DO NOTHING
            RETURNING id
            """
        ),
        {
            "event_id": event.event_id,
            "event_type": event.event_type,
            "body": body,
            "owner": owner,
            "occurred_at": event.occurred_at,
        },
    )
    return len(made.all())


async def _apply_review(session: AsyncSession, event: outbox.StoredEvent) -> str | None:
    """A reviewer's decision moves the held payment on; returns it when approved."""
    payment_id = event.payload.get("payment_id")
    if not isinstance(payment_id, str):
        return None
    row = await store.find_payment(session, payment_id, lock=True)
    if row is None or row.status is not PaymentStatus.PENDING_REVIEW:
        return None  # already decided (a replayed event) or not ours
    approved = event.payload.get("decision") == "approve"
    await store.add_step(
        session,
        payment_id,
        "risk_review",
        "succeeded" if approved else "failed",
        detail={
            "decision": event.payload.get("decision"),
            "review_id": event.payload.get("review_id"),
            "reason": event.payload.get("reason"),
        },
    )
    await move(
        session, row, PaymentEvent.REVIEW_APPROVED if approved else PaymentEvent.REVIEW_REJECTED
    )
    if not approved:
        await emit_status(session, payment_id)
    return payment_id if approved else None


async def relay_once(rt: Runtime, *, limit: int = MAX_EVENTS_PER_PASS) -> RelayReport:
    async def work(session: AsyncSession) -> tuple[int, int, list[str]]:
        events = await outbox.claim_heads(session, limit)
        deliveries = 0
        approved: list[str] = []
        for event in events:
            if event.event_type.startswith(("payment.", "payout.")):
                deliveries += await _fan_out(session, event)
            elif event.event_type == REVIEW_DECIDED:
                found = await _apply_review(session, event)
                if found is not None:
                    approved.append(found)
        await outbox.mark_published(session, [event.id for event in events])
        return len(events), deliveries, approved

    count, deliveries, approved = await rt.tx(work)
    for payment_id in approved:
        try:
            await resume(rt, payment_id)
        except (ProviderUnavailableError, DomainError) as error:
            # The recovery worker's sweep picks the pending payment up again later.
            log.warning(
                "review_resume_failed", payment_id=payment_id, error_type=type(error).__name__
            )
    return RelayReport(count, deliveries, len(approved))
