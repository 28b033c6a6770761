"""Provider-reported facts (from provider webhooks) applied to the payment saga."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import store
from app.payments.domain import PaymentEvent, PaymentStatus, is_stale
from app.payments.saga import settle_authorize, settle_capture
from app.payments.voids import settle_void
from app.providers.api import ProviderResult


async def apply_provider_outcome(
    session: AsyncSession, row: store.PaymentRow, event: PaymentEvent, result: ProviderResult
) -> str:
    """Apply a provider-reported fact to a locked payment; returns what happened.

    Safe out of order and idempotent: a stale fact (the payment is already past it) and a
    fact already applied are ignored.
    """
    if is_stale(row.status, event):
        return "stale"
    if event is PaymentEvent.AUTHORIZED and row.status is PaymentStatus.PENDING:
        await settle_authorize(session, row.id, result)
        return "applied"
    if event is PaymentEvent.PROVIDER_DECLINED and row.status is PaymentStatus.PENDING:
        await settle_authorize(session, row.id, result)
        return "applied"
    if event is PaymentEvent.CAPTURED and row.status is PaymentStatus.AUTHORIZED:
        step = await store.open_step(session, row.id, "capture")
        if step is None:
            amount = result.amount_minor or row.amount_minor
            await store.add_step(
                session,
                row.id,
                "capture",
                "started",
                provider=row.provider,
                amount_minor=amount,
                detail={"initiated_by": "provider_event"},
            )
        await settle_capture(session, row.id, result)
        return "applied"
    if event is PaymentEvent.VOIDED and row.status is PaymentStatus.AUTHORIZED:
        step = await store.open_step(session, row.id, "void")
        if step is None:
            await store.add_step(
                session,
                row.id,
                "void",
                "started",
                provider=row.provider,
                detail={"initiated_by": "provider_event"},
            )
        await settle_void(session, row.id, result)
        return "applied"
    if (row.status, event) == (PaymentStatus.PENDING, PaymentEvent.CAPTURED):
        return "too_early"
    return "ignored"
