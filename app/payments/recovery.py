"""The recovery worker: finishes sagas left in a step by a crash, a timeout or a lost answer.

For each `started` provider step untouched for `recovery_after_s`, it first asks the
provider's status endpoint (`lookup`, same idempotency key) what really happened, and only
when the provider never saw the request does it send it again, with the same key. Then it
applies the answer through the same idempotent settle functions the request path uses,
so a step finishes exactly once however many workers and retries race on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.payments import refunds, store
from app.payments.saga import Runtime, settle_authorize, settle_capture
from app.payments.service import resume
from app.payments.voids import settle_void
from app.platform.errors import DomainError
from app.providers.api import ProviderResult, ProviderUnavailableError

log = structlog.get_logger("moneypath.payments.recovery")

RECOVERABLE_STEPS = ("authorize", "capture", "void", "refund", "payout")
MAX_STEPS_PER_CYCLE = 50

RECOVERED = Counter(
    "moneypath_saga_steps_recovered_total",
    "Saga steps the recovery worker settled, by step and how (lookup or resend).",
    ["step", "via"],
)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    steps_settled: int
    steps_left: int
    payments_resumed: int


async def _send_again(rt: Runtime, step: store.StepRow) -> ProviderResult:
    """Re-send the step's operation with its original key (the provider dedupes by it)."""
    provider = step.provider or ""
    key = step.provider_key or ""
    if step.name == "payout":

        async def read_payout(session: AsyncSession) -> object:
            return await refunds.get_payout(session, step.saga_id)

        payout = await rt.tx(read_payout)
        return await rt.providers.payout(
            provider,
            bank_token=str(payout.bank_token),  # type: ignore[attr-defined]
            amount_minor=int(payout.amount_minor),  # type: ignore[attr-defined]
            currency=str(payout.currency),  # type: ignore[attr-defined]
            idempotency_key=key,
        )

    async def read(session: AsyncSession) -> store.PaymentRow:
        return await store.get_payment(session, step.saga_id)

    row = await rt.tx(read)
    if step.name == "authorize":
        return await rt.providers.authorize(
            provider,
            card_token=row.token,
            amount_minor=row.amount_minor,
            currency=row.currency,
            idempotency_key=key,
            capture=False,
        )
    reference = row.provider_ref or ""
    if step.name == "capture":
        return await rt.providers.capture(
            provider,
            provider_reference=reference,
            amount_minor=int(step.amount_minor or row.amount_minor),
            currency=row.currency,
            idempotency_key=key,
        )
    if step.name == "void":
        return await rt.providers.void(provider, provider_reference=reference, idempotency_key=key)
    return await rt.providers.refund(
        provider,
        provider_reference=reference,
        amount_minor=int(step.amount_minor or 0),
        currency=row.currency,
        idempotency_key=key,
    )


async def _settle(rt: Runtime, step: store.StepRow, result: ProviderResult) -> None:
    saga_id = step.saga_id
    if step.name == "authorize":
        await rt.tx(lambda s: settle_authorize(s, saga_id, result))
        await resume(rt, saga_id)  # automatic capture continues from here
    elif step.name == "capture":
        await rt.tx(lambda s: settle_capture(s, saga_id, result))
    elif step.name == "void":
        await rt.tx(lambda s: settle_void(s, saga_id, result))
    elif step.name == "refund" and step.subject_id is not None:
        refund_id = step.subject_id
        await rt.tx(lambda s: refunds.settle_refund(s, saga_id, refund_id, result))
    elif step.name == "payout":
        await rt.tx(lambda s: refunds.settle_payout(s, saga_id, result))


async def recover_step(rt: Runtime, step: store.StepRow) -> bool:
    """Settle one abandoned step; False when the provider still cannot say."""
    if step.provider is None or step.provider_key is None:
        return False
    via = "lookup"
    result = await rt.providers.lookup(step.provider, idempotency_key=step.provider_key)
    if result is None:
        via = "resend"
        result = await _send_again(rt, step)
    await _settle(rt, step, result)
    RECOVERED.labels(step=step.name, via=via).inc()
    log.info("saga_step_recovered", saga_id=step.saga_id, step=step.name, via=via)
    return True


async def recover(rt: Runtime, *, limit: int = MAX_STEPS_PER_CYCLE) -> RecoveryReport:
    """One bounded pass: abandoned provider steps, then payments stalled between steps."""

    async def claim(session: AsyncSession) -> list[store.StepRow]:
        steps = await store.stale_steps(
            session, RECOVERABLE_STEPS, rt.config.recovery_after_s, limit
        )
        for step in steps:
            # Touching updated_at leases the step: another worker skips it for a while.
            await store.count_attempt(session, step.id)
        return steps

    settled = left = 0
    for step in await rt.tx(claim):
        try:
            done = await recover_step(rt, step)
        except ProviderUnavailableError:
            done = False
        except DomainError as error:
            log.warning("saga_step_recovery_refused", saga_id=step.saga_id, code=error.code)
            done = False
        settled += int(done)
        left += int(not done)

    async def stalled(session: AsyncSession) -> list[str]:
        rows = await session.execute(
            text(
                """
                SELECT p.id FROM payments.payments p
                WHERE (p.status = 'pending'
                       OR (p.status = 'authorized' AND p.capture_mode = 'automatic'
                           -- a refused capture is the merchant's to retry, not ours
                           AND NOT EXISTS (SELECT 1 FROM payments.steps c
                                           WHERE c.saga_id = p.id AND c.name = 'capture')))
                  AND p.updated_at < now() - make_interval(secs => :age)
                  AND NOT EXISTS (SELECT 1 FROM payments.steps s
                                  WHERE s.saga_id = p.id AND s.status = 'started')
                ORDER BY p.updated_at LIMIT :limit
                """
            ),
            {"age": rt.config.recovery_after_s, "limit": limit},
        )
        return [str(payment_id) for (payment_id,) in rows]

    resumed = 0
    for payment_id in await rt.tx(stalled):
        try:
            await resume(rt, payment_id)
            resumed += 1
        except (ProviderUnavailableError, DomainError) as error:
            log.warning(
                "payment_resume_failed", payment_id=payment_id, error_type=type(error).__name__
            )
    return RecoveryReport(settled, left, resumed)
