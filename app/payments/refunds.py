"""Refunds and payouts: ledger first, then the provider, compensated when it refuses.

Money leaves the merchant in the ledger before the provider is asked, in the same
transaction that checks the bound (refunds) or the balance (payouts). So two concurrent
refunds can never together exceed what was captured, and a payout can never spend money
the merchant does not have. If the provider then refuses (or was never reached), the
compensation reverses the ledger transaction. An unknown outcome (timeout after a
request went out) leaves the step `started` for the recovery worker.
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api as ledger_api
from app.payments import events, store
from app.payments.domain import PaymentEvent, PaymentStatus, check_refund, refund_event, transition
from app.payments.saga import ProviderDeclinedError, Runtime, emit_status, now_iso, test_pause_point
from app.platform import outbox
from app.platform.errors import DependencyUnavailableError
from app.providers.api import ProviderOutcome, ProviderResult, ProviderUnavailableError


class ProviderUnavailableNowError(DependencyUnavailableError):
    code = "provider_unavailable"
    title = "Payment provider unavailable"


# ---- what refunds and payouts share ---------------------------------------------------

# Their rows' final states, by kind: constant statements, one per table.
_SUCCEEDED = {
    "refund": text(
        "UPDATE payments.refunds SET status = 'succeeded', provider_ref = :ref,"
        " updated_at = now() WHERE id = :id"
    ),
    "payout": text(
        "UPDATE payments.payouts SET status = 'paid', provider_ref = :ref,"
        " updated_at = now() WHERE id = :id"
    ),
}
_FAILED = {
    "refund": text(
        "UPDATE payments.refunds SET status = 'failed', updated_at = now() WHERE id = :id"
    ),
    "payout": text(
        "UPDATE payments.payouts SET status = 'failed', updated_at = now() WHERE id = :id"
    ),
}
Kind = Literal["refund", "payout"]


async def _finish(
    session: AsyncSession, kind: Kind, row_id: str, step: store.StepRow | None, ref: str | None
) -> None:
    """The provider approved: the refund or payout and its provider step succeeded."""
    await session.execute(_SUCCEEDED[kind], {"id": row_id, "ref": ref})
    if step is not None:
        await store.finish_step(session, step.id, "succeeded", provider_ref=ref)


async def _compensate(
    session: AsyncSession,
    kind: Kind,
    row_id: str,
    step: store.StepRow | None,
    result: ProviderResult | None,
    *,
    transaction_id: str,
    listed_on: tuple[str, str],
) -> str:
    """Refused or never reached: reverse the money's ledger transaction (the reversal is
    listed on the `listed_on` (table, id) row), fail the row and its provider step.
    Returns the reversal's id."""
    reversal = await ledger_api.reverse_transaction(session, transaction_id)
    await store.add_ledger_transaction(session, *listed_on, reversal.id)
    await session.execute(_FAILED[kind], {"id": row_id})
    if step is not None:
        await store.finish_step(
            session,
            step.id,
            "failed",
            detail={"raw_status": result.raw_status if result else "unreachable"},
        )
    return reversal.id


# ---- refunds ----------------------------------------------------------------------------


async def start_refund(rt: Runtime, payment_id: str, owner: str, amount_minor: int) -> str:
    refund_id = store.new_id("ref")

    async def start(session: AsyncSession) -> None:
        row = await store.get_payment(session, payment_id, lock=True)
        # The bound first, so asking a fully refunded payment for more is "exceeds", then
        # the table: refunds start from captured or partially_refunded only (else 409).
        if row.status is PaymentStatus.REFUNDED or row.captured_minor > 0:
            not_failed = await store.refund_amounts_not_failed(session, payment_id)
            check_refund(row.captured_minor, not_failed, amount_minor)
        transition(row.status, PaymentEvent.REFUNDED_IN_PART)
        if row.provider is None:
            raise ProviderDeclinedError("payment has no provider")
        clearing = await store.clearing_account(session, row.provider, row.currency)
        posted = await ledger_api.create_transaction(
            session,
            legs=[
                ledger_api.Leg(row.merchant_account_id, "debit", amount_minor, row.currency),
                ledger_api.Leg(clearing, "credit", amount_minor, row.currency),
            ],
            status="posted",
            description=f"refund {refund_id} of {payment_id}",
            external_ref=f"{refund_id}",
        )
        await session.execute(
            text(
                "INSERT INTO payments.refunds (id, payment_id, owner, amount_minor, status,"
                " ledger_transaction_id) VALUES (:id, :pid, :owner, :amount, 'pending', :txn)"
            ),
            {
                "id": refund_id,
                "pid": payment_id,
                "owner": owner,
                "amount": amount_minor,
                "txn": posted.id,
            },
        )
        await store.add_ledger_transaction(session, "payments", payment_id, posted.id)
        await store.add_step(
            session,
            payment_id,
            "ledger_refund",
            "succeeded",
            subject_id=refund_id,
            amount_minor=amount_minor,
            detail={"ledger_transaction_id": posted.id},
        )
        await store.add_step(
            session,
            payment_id,
            "refund",
            "started",
            attempts=1,
            provider=row.provider,
            provider_key=refund_id,
            subject_id=refund_id,
            amount_minor=amount_minor,
        )

    await rt.tx(start)
    await call_refund(rt, payment_id, refund_id)
    return refund_id


async def call_refund(rt: Runtime, payment_id: str, refund_id: str) -> None:
    async def read(session: AsyncSession) -> tuple[store.PaymentRow, Any]:
        return await store.get_payment(session, payment_id), await store.get_refund(
            session, refund_id
        )

    row, refund = await rt.tx(read)
    if row.provider is None or row.provider_ref is None:
        raise ProviderDeclinedError("payment is not at a provider")
    try:
        result = await rt.providers.refund(
            row.provider,
            provider_reference=row.provider_ref,
            amount_minor=int(refund.amount_minor),
            currency=row.currency,
            idempotency_key=refund_id,
        )
    except ProviderUnavailableError as error:
        if not error.attempted:
            await rt.tx(lambda s: settle_refund(s, payment_id, refund_id, None))
            raise ProviderUnavailableNowError(
                f"provider {row.provider} unavailable; refund {refund_id} failed and was reversed",
                refund_id=refund_id,
            ) from None
        raise ProviderUnavailableNowError(
            f"provider {row.provider} did not answer; refund {refund_id} stays pending"
            " until the provider confirms",
            refund_id=refund_id,
        ) from None
    await test_pause_point(rt.config, "refund")
    await rt.tx(lambda s: settle_refund(s, payment_id, refund_id, result))
    if result.outcome in (ProviderOutcome.DECLINED, ProviderOutcome.FAILED):
        raise ProviderDeclinedError(
            f"the provider refused the refund ({result.raw_status})", refund_id=refund_id
        )


async def settle_refund(
    session: AsyncSession, payment_id: str, refund_id: str, result: ProviderResult | None
) -> str:
    """Idempotent: settles a pending refund once; returns the refund's status."""
    row = await store.get_payment(session, payment_id, lock=True)
    refund = await store.get_refund(session, refund_id, lock=True)
    if refund is None or refund.status != "pending":
        return str(refund.status) if refund is not None else "missing"
    if result is not None and result.outcome is ProviderOutcome.PENDING:
        return "pending"
    step = await store.open_step(session, payment_id, "refund", refund_id)
    if result is not None and result.outcome is ProviderOutcome.APPROVED:
        amount = int(refund.amount_minor)
        target = transition(
            row.status, refund_event(row.captured_minor, row.refunded_minor + amount)
        )
        await store.update_payment(
            session, payment_id, status=target.value, refunded_minor=row.refunded_minor + amount
        )
        await _finish(session, "refund", refund_id, step, result.operation_reference)
        await emit_status(session, payment_id, refund_id=refund_id, refund_amount_minor=amount)
        return "succeeded"
    # Refused or never reached: compensate by reversing the refund's ledger transaction.
    reversal_id = await _compensate(
        session, "refund", refund_id, step, result,
        transaction_id=str(refund.ledger_transaction_id), listed_on=("payments", payment_id),
    )  # fmt: skip
    await store.add_step(
        session,
        payment_id,
        "ledger_refund",
        "compensated",
        subject_id=refund_id,
        amount_minor=int(refund.amount_minor),
        detail={"reversal_transaction_id": reversal_id},
    )
    return "failed"


def refund_json(refund: Any) -> dict[str, Any]:
    return {
        "id": refund.id,
        "payment_id": refund.payment_id,
        "amount_minor": int(refund.amount_minor),
        "status": refund.status,
        "ledger_transaction_id": refund.ledger_transaction_id,
        "created_at": store.iso(refund.created_at),
    }


# ---- payouts ----------------------------------------------------------------------------


async def start_payout(
    rt: Runtime,
    *,
    owner: str,
    account_id: str,
    amount_minor: int,
    currency: str,
    provider: str,
    bank_token: str,
) -> str:
    payout_id = store.new_id("po")

    async def start(session: AsyncSession) -> None:
        ledger_api.currency_exponent(currency)  # an unknown code is named as such
        account = await ledger_api.get_account(session, account_id)
        if account.currency != currency or account.normal_balance != "credit":
            raise ledger_api.CurrencyMismatchError(
                "the payout account must be a credit-normal account in the payout's currency"
            )
        clearing = await store.clearing_account(session, provider, currency)
        posted = await ledger_api.create_transaction(
            session,
            legs=[
                ledger_api.Leg(account_id, "debit", amount_minor, currency),
                ledger_api.Leg(clearing, "credit", amount_minor, currency),
            ],
            status="posted",
            description=f"payout {payout_id}",
            external_ref=payout_id,
        )
        await session.execute(
            text(
                "INSERT INTO payments.payouts (id, owner, account_id, amount_minor, currency,"
                " provider, bank_token, status, ledger_transaction_ids) VALUES (:id, :owner,"
                " :account, :amount, :currency, :provider, :bank, 'pending', ARRAY[:txn])"
            ),
            {
                "id": payout_id,
                "owner": owner,
                "account": account_id,
                "amount": amount_minor,
                "currency": currency,
                "provider": provider,
                "bank": bank_token,
                "txn": posted.id,
            },
        )
        await store.add_step(
            session,
            payout_id,
            "ledger_debit",
            "succeeded",
            subject_id=posted.id,
            amount_minor=amount_minor,
        )
        await store.add_step(
            session,
            payout_id,
            "payout",
            "started",
            attempts=1,
            provider=provider,
            provider_key=payout_id,
            amount_minor=amount_minor,
        )

    await rt.tx(start)
    await call_payout(rt, payout_id)
    return payout_id


async def get_payout(session: AsyncSession, payout_id: str, *, lock: bool = False) -> Any:
    sql = (
        "SELECT id, owner, account_id, amount_minor, currency, provider, bank_token, status,"
        " provider_ref, ledger_transaction_ids, created_at FROM payments.payouts WHERE id = :id"
    )
    return (
        await session.execute(text(sql + (" FOR UPDATE" if lock else "")), {"id": payout_id})
    ).first()


async def call_payout(rt: Runtime, payout_id: str) -> None:
    async def read(session: AsyncSession) -> Any:
        return await get_payout(session, payout_id)

    payout = await rt.tx(read)
    try:
        result = await rt.providers.payout(
            payout.provider,
            bank_token=payout.bank_token,
            amount_minor=int(payout.amount_minor),
            currency=payout.currency,
            idempotency_key=payout_id,
        )
    except ProviderUnavailableError as error:
        if not error.attempted:
            await rt.tx(lambda s: settle_payout(s, payout_id, None))
        return
    await test_pause_point(rt.config, "payout")
    await rt.tx(lambda s: settle_payout(s, payout_id, result))


async def settle_payout(
    session: AsyncSession, payout_id: str, result: ProviderResult | None
) -> str:
    payout = await get_payout(session, payout_id, lock=True)
    if payout is None or payout.status != "pending":
        return str(payout.status) if payout is not None else "missing"
    if result is not None and result.outcome is ProviderOutcome.PENDING:
        return "pending"
    step = await store.open_step(session, payout_id, "payout")
    fields = {
        "payout_id": payout_id,
        "owner": payout.owner,
        "account_id": payout.account_id,
        "amount_minor": int(payout.amount_minor),
        "currency": payout.currency,
        "provider": payout.provider,
        "occurred_at": now_iso(),
    }
    if result is not None and result.outcome is ProviderOutcome.APPROVED:
        await _finish(session, "payout", payout_id, step, result.provider_reference)
        await outbox.emit(session, events.PayoutPaid(**fields))
        return "paid"
    reversal_id = await _compensate(
        session, "payout", payout_id, step, result,
        transaction_id=str(payout.ledger_transaction_ids[0]), listed_on=("payouts", payout_id),
    )  # fmt: skip
    await store.add_step(
        session,
        payout_id,
        "ledger_debit",
        "compensated",
        subject_id=reversal_id,
        amount_minor=int(payout.amount_minor),
    )
    await outbox.emit(session, events.PayoutFailed(**fields))
    return "failed"


async def payout_json(session: AsyncSession, payout_id: str) -> dict[str, Any]:
    payout = await get_payout(session, payout_id)
    return {
        "id": payout.id,
        "status": payout.status,
        "account_id": payout.account_id,
        "amount_minor": int(payout.amount_minor),
        "currency": payout.currency,
        "provider": payout.provider,
        "provider_reference": payout.provider_ref,
        "ledger_transaction_ids": list(payout.ledger_transaction_ids),
        "steps": [store.step_json(step) for step in await store.steps_of(session, payout_id)],
        "created_at": store.iso(payout.created_at),
    }
