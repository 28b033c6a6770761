"""The payment saga: each step is persisted before its provider call and settled after it.

The pattern of every provider-facing step:

1. one transaction records the step as `started` (with the provider idempotency key);
2. the provider call runs outside any transaction (retries and breaker in the adapter);
3. one transaction applies the answer: the step's status, the ledger posting, the
   payment's status and its outbox event, all or nothing, under the payment's row lock.

If the process dies between 2 and 3, the step stays `started`; the recovery worker asks
the provider's `lookup` with the same key and finishes step 3 exactly once (the row lock
and the status check make step 3 idempotent, the key makes the provider call idempotent).

This module holds the shared pieces (`Runtime`, `move`, `emit_status`) and the authorize
and capture flows; the void flow is in `voids`, provider-reported facts in
`provider_outcomes`, refunds in `refunds`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.ledger import api as ledger_api
from app.payments import events, store
from app.payments.config import PaymentsConfig
from app.payments.domain import (
    InvalidStateError,
    PaymentEvent,
    PaymentStatus,
    check_capture,
    transition,
)
from app.platform import metrics, outbox, tracing
from app.platform.db import run_in_transaction
from app.platform.errors import DomainError
from app.platform.opa import Opa
from app.platform.utc import rfc3339
from app.platform.vault import Vault
from app.providers.api import (
    ProviderClients,
    ProviderOutcome,
    ProviderResult,
    ProviderUnavailableError,
)

log = structlog.get_logger("moneypath.payments")
T = TypeVar("T")

PROVIDER_STEPS = ("authorize", "capture", "void", "refund")


class ProviderDeclinedError(DomainError):
    status = 422
    title = "The provider refused the operation"


@dataclass(slots=True)
class Runtime:
    sessions: async_sessionmaker[AsyncSession]
    providers: ProviderClients
    config: PaymentsConfig
    vault: Vault | None = None
    # The policy engine the risk check asks (app.risk's assessment takes it). Only the
    # API creates payments; the worker's runtime resumes them and needs none.
    opa: Opa | None = None
    # The risk decision's time box (settings' RISK_TIMEOUT_MS); past it: review.
    risk_timeout_ms: int = 250

    def breaker_open(self, provider: str) -> bool:
        return self.providers.breaker_state(provider) == "open"

    async def tx(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        return await run_in_transaction(self.sessions, work)


def now_iso() -> str:
    return rfc3339(datetime.now(UTC))


_EVENT_CLASSES: dict[PaymentStatus, type[events._PaymentEvent]] = {
    PaymentStatus.AUTHORIZED: events.PaymentAuthorized,
    PaymentStatus.CAPTURED: events.PaymentCaptured,
    PaymentStatus.VOIDED: events.PaymentVoided,
    PaymentStatus.DECLINED: events.PaymentDeclined,
    PaymentStatus.FAILED: events.PaymentFailed,
    PaymentStatus.PENDING_REVIEW: events.PaymentHeldForReview,
}


async def emit_status(session: AsyncSession, payment_id: str, **extra: Any) -> None:
    """Emit the event for the payment's status, snapshotting the row as committed."""
    row = await store.get_payment(session, payment_id)
    fields: dict[str, Any] = {
        "payment_id": row.id,
        "owner": row.owner,
        "status": row.status.value,
        "amount_minor": row.amount_minor,
        "captured_minor": row.captured_minor,
        "refunded_minor": row.refunded_minor,
        "currency": row.currency,
        "provider": row.provider,
        "occurred_at": now_iso(),
    }
    if extra:
        await outbox.emit(session, events.PaymentRefunded(**fields, **extra))
        return
    # Counted with the event, inside the transaction: a rolled-back change is counted
    # anyway, which is rare and errs on the side of seeing activity.
    metrics.record_payment(row.status.value, row.provider or "none", row.captured_minor)
    event_class = _EVENT_CLASSES.get(row.status)
    if event_class is not None:
        await outbox.emit(session, event_class(**fields))


async def move(
    session: AsyncSession, row: store.PaymentRow, event: PaymentEvent, **values: Any
) -> PaymentStatus:
    """Apply one transition of the table to a locked row (and any other column changes)."""
    target = transition(row.status, event)
    await store.update_payment(session, row.id, status=target.value, **values)
    return target


TEST_PAUSE_S = 120.0


async def test_pause_point(config: PaymentsConfig, operation: str) -> None:
    """Test-only: hold still between the provider's answer and the ledger posting.

    Enabled only by PAYMENTS_TEST_PAUSE_AFTER_PROVIDER (config refuses it outside
    MONEYPATH_ENV=test). The kill -9 e2e test waits for this log line, kills the API
    process with SIGKILL, restarts it and lets the recovery worker finish the saga.
    """
    if config.pause_after_provider == operation:
        log.warning("test_pause_after_provider", operation=operation)
        await asyncio.sleep(TEST_PAUSE_S)


async def start_step(
    session: AsyncSession, row: store.PaymentRow, name: str, *, amount_minor: int | None = None
) -> store.StepRow:
    """Record step 1 of a provider step on an authorized payment: `started`, keyed by the
    payment and the step's name."""
    await store.add_step(
        session,
        row.id,
        name,
        "started",
        attempts=1,
        provider=row.provider,
        provider_key=f"{row.id}:{name}",
        amount_minor=amount_minor,
    )
    found = await store.open_step(session, row.id, name)
    if found is None:
        raise InvalidStateError(f"{name} step vanished")
    return found


async def approved_step(
    session: AsyncSession, payment_id: str, name: str, result: ProviderResult
) -> tuple[store.PaymentRow, store.StepRow | None]:
    """Step 3's guard for a step on an authorized payment: the locked payment, and its open
    step when the provider approved it. No step when there is nothing to apply: the step
    is done, the payment moved on, the answer is pending, or the provider refused (then
    the step is finished as failed and the payment stays authorized)."""
    row = await store.get_payment(session, payment_id, lock=True)
    step = await store.open_step(session, payment_id, name)
    if step is None or row.status is not PaymentStatus.AUTHORIZED:
        return row, None
    if result.outcome is ProviderOutcome.PENDING:
        return row, None
    if result.outcome is not ProviderOutcome.APPROVED:
        await store.finish_step(
            session, step.id, "failed", detail={"raw_status": result.raw_status}
        )
        return row, None
    return row, step


# ---- authorize ------------------------------------------------------------------------


@tracing.traced("saga.authorize")
async def run_authorize(rt: Runtime, payment_id: str) -> None:
    """Start (or re-join) the authorize step and settle it with the provider's answer."""

    async def start(session: AsyncSession) -> tuple[store.PaymentRow, store.StepRow | None]:
        row = await store.get_payment(session, payment_id, lock=True)
        if row.status is not PaymentStatus.PENDING:
            return row, None
        step = await store.open_step(session, payment_id, "authorize")
        if step is None:
            await store.add_step(
                session,
                payment_id,
                "authorize",
                "started",
                attempts=1,
                provider=row.provider,
                provider_key=f"{payment_id}:authorize",
                amount_minor=row.amount_minor,
            )
            step = await store.open_step(session, payment_id, "authorize")
        else:
            await store.count_attempt(session, step.id)
        return row, step

    row, step = await rt.tx(start)
    if step is None or row.provider is None or step.provider_key is None:
        return
    try:
        result = await rt.providers.authorize(
            row.provider,
            card_token=row.token,
            capture=False,
            amount_minor=row.amount_minor,
            currency=row.currency,
            idempotency_key=step.provider_key,
        )
    except ProviderUnavailableError as error:
        if not error.attempted:
            # Nothing reached the provider: the payment fails cleanly, nothing to undo.
            await rt.tx(lambda s: settle_authorize(s, payment_id, None, unreached=True))
        # Otherwise the outcome is unknown: the step stays started for recovery.
        log.warning("authorize_unavailable", payment_id=payment_id, attempted=error.attempted)
        return
    await test_pause_point(rt.config, "authorize")
    await rt.tx(lambda s: settle_authorize(s, payment_id, result))


async def settle_authorize(
    session: AsyncSession,
    payment_id: str,
    result: ProviderResult | None,
    *,
    unreached: bool = False,
) -> PaymentStatus:
    """Step 3 of authorize: idempotent under the row lock (a second caller finds it done)."""
    row = await store.get_payment(session, payment_id, lock=True)
    step = await store.open_step(session, payment_id, "authorize")
    if row.status is not PaymentStatus.PENDING or step is None:
        return row.status
    if unreached or result is None:
        await store.finish_step(
            session, step.id, "failed", detail={"reason": "provider_unreachable"}
        )
        target = await move(session, row, PaymentEvent.PROVIDER_FAILED)
    elif result.outcome is ProviderOutcome.APPROVED:
        target = await _hold(session, row, step, result)
    elif result.outcome is ProviderOutcome.DECLINED:
        await store.finish_step(
            session,
            step.id,
            "failed",
            provider_ref=result.provider_reference,
            detail={"decline_code": result.decline_code, "raw_status": result.raw_status},
        )
        target = await move(
            session, row, PaymentEvent.PROVIDER_DECLINED, provider_ref=result.provider_reference
        )
    elif result.outcome is ProviderOutcome.FAILED:
        await store.finish_step(
            session, step.id, "failed", detail={"raw_status": result.raw_status}
        )
        target = await move(session, row, PaymentEvent.PROVIDER_FAILED)
    else:  # PENDING: the final answer comes by webhook or lookup
        await store.update_payment(session, row.id, provider_ref=result.provider_reference)
        return row.status
    await emit_status(session, payment_id)
    return target


async def _hold(
    session: AsyncSession, row: store.PaymentRow, step: store.StepRow, result: ProviderResult
) -> PaymentStatus:
    """The ledger hold: a pending transaction debiting clearing and crediting the merchant."""
    if row.provider is None:
        raise InvalidStateError("payment has no provider")
    clearing = await store.clearing_account(session, row.provider, row.currency)
    hold = await ledger_api.create_transaction(
        session,
        legs=[
            ledger_api.Leg(clearing, "debit", row.amount_minor, row.currency),
            ledger_api.Leg(row.merchant_account_id, "credit", row.amount_minor, row.currency),
        ],
        status="pending",
        description=f"authorization of {row.id}",
        external_ref=f"{row.id}:hold",
    )
    await store.finish_step(session, step.id, "succeeded", provider_ref=result.provider_reference)
    await store.add_step(
        session,
        row.id,
        "ledger_hold",
        "succeeded",
        subject_id=hold.id,
        amount_minor=row.amount_minor,
    )
    await store.add_ledger_transaction(session, "payments", row.id, hold.id)
    return await move(
        session,
        row,
        PaymentEvent.AUTHORIZED,
        provider_ref=result.provider_reference,
        hold_transaction_id=hold.id,
    )


# ---- capture ----------------------------------------------------------------------------


@tracing.traced("saga.capture")
async def run_capture(rt: Runtime, payment_id: str, amount_minor: int | None) -> None:
    async def start(session: AsyncSession) -> tuple[store.PaymentRow, store.StepRow]:
        row = await store.get_payment(session, payment_id, lock=True)
        step = await store.open_step(session, payment_id, "capture")
        if step is not None:  # a retry re-joins the capture in flight, same key and amount
            await store.count_attempt(session, step.id)
            return row, step
        transition(row.status, PaymentEvent.CAPTURED)  # 409 invalid_state when not allowed
        amount = row.amount_minor if amount_minor is None else amount_minor
        check_capture(row.amount_minor, amount)
        return row, await start_step(session, row, "capture", amount_minor=amount)

    row, step = await rt.tx(start)
    if row.provider is None or row.provider_ref is None or step.provider_key is None:
        raise InvalidStateError("payment is not authorized at a provider")
    amount = int(step.amount_minor or row.amount_minor)
    result = await rt.providers.capture(
        row.provider,
        provider_reference=row.provider_ref,
        amount_minor=amount,
        currency=row.currency,
        idempotency_key=step.provider_key,
    )
    await test_pause_point(rt.config, "capture")
    await rt.tx(lambda s: settle_capture(s, payment_id, result))
    if result.outcome in (ProviderOutcome.DECLINED, ProviderOutcome.FAILED):
        raise ProviderDeclinedError(f"the provider refused the capture ({result.raw_status})")


async def settle_capture(
    session: AsyncSession, payment_id: str, result: ProviderResult
) -> PaymentStatus:
    row, step = await approved_step(session, payment_id, "capture", result)
    if step is None:
        return row.status
    return await _post_capture(
        session, row, step, int(step.amount_minor or row.amount_minor), result.operation_reference
    )


async def _post_capture(
    session: AsyncSession,
    row: store.PaymentRow,
    step: store.StepRow,
    amount: int,
    reference: str | None,
) -> PaymentStatus:
    if row.hold_transaction_id is None:
        raise InvalidStateError("authorized payment without a hold")
    partial = amount < row.amount_minor
    await ledger_api.post_transaction(
        session, row.hold_transaction_id, amount_minor=amount if partial else None
    )
    await store.finish_step(session, step.id, "succeeded", provider_ref=reference)
    await store.add_step(
        session,
        row.id,
        "ledger_capture",
        "succeeded",
        subject_id=row.hold_transaction_id,
        amount_minor=amount,
    )
    if partial:
        # The ledger's partial post releases the rest of the hold in the same statement;
        # the step makes that release visible on the payment, as its own fact.
        await store.add_step(
            session,
            row.id,
            "release_remainder",
            "succeeded",
            subject_id=row.hold_transaction_id,
            amount_minor=row.amount_minor - amount,
        )
    target = await move(session, row, PaymentEvent.CAPTURED, captured_minor=amount)
    await emit_status(session, row.id)
    return target
