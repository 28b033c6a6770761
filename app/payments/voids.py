"""The void flow of the payment saga: release an authorization's hold at the provider and
in the ledger (the step pattern is described in `saga`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api as ledger_api
from app.payments import store
from app.payments.domain import InvalidStateError, PaymentEvent, PaymentStatus, transition
from app.payments.saga import (
    ProviderDeclinedError,
    Runtime,
    approved_step,
    emit_status,
    move,
    start_step,
    test_pause_point,
)
from app.platform import tracing
from app.providers.api import ProviderOutcome, ProviderResult


@tracing.traced("saga.void")
async def run_void(rt: Runtime, payment_id: str) -> None:
    async def start(session: AsyncSession) -> tuple[store.PaymentRow, store.StepRow]:
        row = await store.get_payment(session, payment_id, lock=True)
        step = await store.open_step(session, payment_id, "void")
        if step is not None:
            await store.count_attempt(session, step.id)
            return row, step
        transition(row.status, PaymentEvent.VOIDED)
        return row, await start_step(session, row, "void")

    row, step = await rt.tx(start)
    if row.provider is None or row.provider_ref is None or step.provider_key is None:
        raise InvalidStateError("payment is not authorized at a provider")
    result = await rt.providers.void(
        row.provider, provider_reference=row.provider_ref, idempotency_key=step.provider_key
    )
    await test_pause_point(rt.config, "void")
    await rt.tx(lambda s: settle_void(s, payment_id, result))
    if result.outcome in (ProviderOutcome.DECLINED, ProviderOutcome.FAILED):
        raise ProviderDeclinedError(f"the provider refused the void ({result.raw_status})")


async def settle_void(
    session: AsyncSession, payment_id: str, result: ProviderResult
) -> PaymentStatus:
    row, step = await approved_step(session, payment_id, "void", result)
    if step is None:
        return row.status
    return await _release_hold(session, row, step, result.operation_reference)


async def _release_hold(
    session: AsyncSession, row: store.PaymentRow, step: store.StepRow, reference: str | None
) -> PaymentStatus:
    if row.hold_transaction_id is None:
        raise InvalidStateError("authorized payment without a hold")
    await ledger_api.void_transaction(session, row.hold_transaction_id)
    await store.finish_step(session, step.id, "succeeded", provider_ref=reference)
    await store.add_step(
        session,
        row.id,
        "ledger_release",
        "succeeded",
        subject_id=row.hold_transaction_id,
        amount_minor=row.amount_minor,
    )
    target = await move(session, row, PaymentEvent.VOIDED)
    await emit_status(session, row.id)
    return target
