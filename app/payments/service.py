"""Creating a payment: the checks that write nothing, then the saga's first steps.

Order: KYC (422 kyc_required), merchant account (422 currency_mismatch), route choice
(503 provider_unavailable when no provider can be used, before anything is written),
then one transaction writes the payment with its risk and route steps, then authorize.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import api as identity_api
from app.ledger import api as ledger_api
from app.payments import store
from app.payments.domain import PaymentEvent, PaymentStatus
from app.payments.routing import choose_route
from app.payments.saga import Runtime, emit_status, move, run_authorize, run_capture
from app.platform.errors import DomainError, InvariantViolation
from app.risk import api as risk_api


class KycRequiredError(DomainError):
    status = 422
    title = "The customer's KYC is not verified"


class UnknownCustomerError(DomainError):
    status = 422
    title = "Unknown customer"


class UnknownAccountError(DomainError):
    status = 422
    title = "Unknown merchant account"


class CurrencyMismatchError(DomainError):
    status = 422
    title = "Currency does not match the account"


async def check_payment_request(session: AsyncSession, owner: str, body: dict[str, Any]) -> None:
    """The refusals that write nothing: unknown currency, unknown customer, KYC, merchant
    account."""
    # The ledger's ISO 4217 table is the one home of "which currencies carry money";
    # checked first so an unknown code is named as such, not as an account mismatch.
    ledger_api.currency_exponent(body["currency"])
    try:
        kyc = await identity_api.customer_kyc_state(session, body["customer_id"])
    except identity_api.CustomerNotFoundError:
        raise UnknownCustomerError(f"no customer {body['customer_id']}") from None
    if kyc.owner != owner:
        # Another client's customer is, to this caller, a customer that does not exist.
        raise UnknownCustomerError(f"no customer {body['customer_id']}")
    if kyc.kyc_status != "verified":
        raise KycRequiredError(f"customer KYC is {kyc.kyc_status}; it must be verified")
    try:
        account = await ledger_api.get_account(session, body["merchant_account_id"])
    except ledger_api.AccountNotFoundError:
        raise UnknownAccountError(f"no account {body['merchant_account_id']}") from None
    if account.normal_balance != "credit" or account.currency != body["currency"]:
        raise CurrencyMismatchError(
            "the merchant account must be a credit-normal account in the payment's currency"
        )


async def create_payment(rt: Runtime, owner: str, request_key: str, body: dict[str, Any]) -> str:
    """Run the saga for a new payment as far as it goes now; returns the payment id.

    A retry of the same request (same client and Idempotency-Key) after a crash finds the
    payment it started and resumes it instead of creating a second one.
    """

    async def existing(session: AsyncSession) -> store.PaymentRow | None:
        return await store.payment_by_request(session, owner, request_key)

    found = await rt.tx(existing)
    if found is not None:
        await resume(rt, found.id)
        return found.id

    async def check(session: AsyncSession) -> None:
        await check_payment_request(session, owner, body)

    await rt.tx(check)
    payment_id = store.new_id("pay")
    method = body["payment_method"]
    requested = method.get("provider")
    route = choose_route(
        rt.config.routing, body["currency"], payment_id, rt.breaker_open, requested
    )

    opa = rt.opa
    if opa is None:
        # Without the policy engine no payment may start: approving unassessed is fail-open.
        raise InvariantViolation("risk_engine_configured", "the payments runtime has no OPA")
    risk_input = risk_api.RiskInput(
        payment_id=payment_id,
        client_id=owner,
        customer_id=body["customer_id"],
        amount_minor=body["amount_minor"],
        currency=body["currency"],
    )

    async def begin(session: AsyncSession) -> None:
        # In the step's transaction: the velocity count, the review and the audit record
        # (with OPA's decision id) commit together with the payment, or not at all.
        risk = await risk_api.assess_payment(
            session, opa, risk_input, timeout_ms=rt.risk_timeout_ms
        )
        await store.insert_payment(
            session,
            id=payment_id,
            owner=owner,
            request_key=request_key,
            customer_id=body["customer_id"],
            merchant_account_id=body["merchant_account_id"],
            amount_minor=body["amount_minor"],
            currency=body["currency"],
            capture_mode=body["capture"],
            token=method["token"],
            status=PaymentStatus.PENDING.value,
            provider=route.provider,
            route_rule=route.rule,
            risk_decision_id=risk.decision_id,
        )
        await store.add_step(
            session,
            payment_id,
            "risk_check",
            "succeeded" if risk.outcome == "approve" else "failed",
            detail={
                "decision": risk.outcome,
                "reason_codes": list(risk.reasons),
                "decision_id": risk.decision_id,
                "review_id": risk.review_id,
            },
        )
        await store.add_step(
            session,
            payment_id,
            "route",
            "succeeded",
            provider=route.provider,
            detail={
                "rule": route.rule,
                "requested_provider": requested,
                "fallback_from": route.fallback_from,
            },
        )
        if risk.outcome != "approve":
            row = await store.get_payment(session, payment_id, lock=True)
            event = (
                PaymentEvent.REVIEW_REQUIRED
                if risk.outcome == "review"
                else PaymentEvent.RISK_DECLINED
            )
            await move(session, row, event)
            await emit_status(session, payment_id)

    await rt.tx(begin)
    await resume(rt, payment_id)
    return payment_id


async def resume(rt: Runtime, payment_id: str) -> None:
    """Carry a payment forward from wherever it stands (after create, review or crash)."""

    async def read(session: AsyncSession) -> store.PaymentRow:
        return await store.get_payment(session, payment_id)

    row = await rt.tx(read)
    if row.status is PaymentStatus.PENDING:
        await run_authorize(rt, payment_id)
        row = await rt.tx(read)
    if row.status is PaymentStatus.AUTHORIZED and row.capture_mode == "automatic":
        await run_capture(rt, payment_id, None)


async def payment_json(session: AsyncSession, payment_id: str) -> dict[str, Any]:
    row = await store.get_payment(session, payment_id)
    steps = await store.steps_of(session, payment_id)
    return {
        "id": row.id,
        "status": row.status.value,
        "amount_minor": row.amount_minor,
        "captured_minor": row.captured_minor,
        "refunded_minor": row.refunded_minor,
        "currency": row.currency,
        "customer_id": row.customer_id,
        "merchant_account_id": row.merchant_account_id,
        "capture": row.capture_mode,
        "provider": row.provider,
        "provider_reference": row.provider_ref,
        "route_rule": row.route_rule,
        "ledger_transaction_ids": list(row.ledger_transaction_ids),
        "steps": [store.step_json(step) for step in steps],
        "created_at": store.iso(row.created_at),
        "updated_at": store.iso(row.updated_at),
    }
