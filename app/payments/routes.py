"""HTTP endpoints of payments (API.md "Payments"), declared for the platform pipeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import api as ledger_api
from app.payments import refunds, service, store, webhook_endpoints
from app.payments.domain import (
    CaptureExceedsAuthorizedError,
    InvalidStateError,
    RefundExceedsCapturedError,
)
from app.payments.routing import NoProviderAvailableError
from app.payments.saga import ProviderDeclinedError, Runtime, run_capture
from app.payments.schemas import (
    CAPTURE_SCHEMA,
    EMPTY_SCHEMA,
    NEW_PAYMENT_SCHEMA,
    PAYMENT_SCHEMA,
    PAYOUT_RESPONSE_SCHEMA,
    PAYOUT_SCHEMA,
    REFUND_RESPONSE_SCHEMA,
    REFUND_SCHEMA,
    WEBHOOK_ENDPOINT_RESPONSE_SCHEMA,
    WEBHOOK_ENDPOINT_SCHEMA,
)
from app.payments.voids import run_void
from app.platform.errors import DomainError, InvariantViolation, NotFoundError
from app.platform.web import Call, Endpoint, Result


def runtime(call: Call) -> Runtime:
    # The composition root's services carry a `payments` field (ApiServices).
    found = getattr(call.services, "payments", None)
    if not isinstance(found, Runtime):
        raise InvariantViolation("payments_runtime", "the composition root did not start payments")
    return found


def _owner(call: Call) -> str:
    if call.principal is None:
        raise InvariantViolation("authenticated", "payments endpoints need a principal")
    return call.principal.client_id


async def payment_owner(session: AsyncSession, payment_id: str) -> str | None:
    found = await session.execute(
        text("SELECT owner FROM payments.payments WHERE id = :id"), {"id": payment_id}
    )
    return found.scalar_one_or_none()


async def payout_owner(session: AsyncSession, payout_id: str) -> str | None:
    found = await session.execute(
        text("SELECT owner FROM payments.payouts WHERE id = :id"), {"id": payout_id}
    )
    return found.scalar_one_or_none()


async def _payment_view(session: AsyncSession, payment_id: str) -> dict[str, Any]:
    return await service.payment_json(session, payment_id)


async def create_payment_handler(call: Call, session: AsyncSession) -> Result:
    key = call.request.headers.get("idempotency-key", "")
    payment_id = await service.create_payment(runtime(call), _owner(call), key, call.body)
    return Result(status=201, body=await _payment_view(session, payment_id), resource_id=payment_id)


async def get_payment_handler(call: Call, session: AsyncSession) -> Result:
    payment_id = call.path["id"]
    if await payment_owner(session, payment_id) is None:
        raise NotFoundError(f"no payment {payment_id}")
    return Result(status=200, body=await _payment_view(session, payment_id))


async def capture_handler(call: Call, session: AsyncSession) -> Result:
    payment_id = call.path["id"]
    if await payment_owner(session, payment_id) is None:
        raise NotFoundError(f"no payment {payment_id}")
    await run_capture(runtime(call), payment_id, call.body.get("amount_minor"))
    return Result(status=200, body=await _payment_view(session, payment_id))


async def void_handler(call: Call, session: AsyncSession) -> Result:
    payment_id = call.path["id"]
    if await payment_owner(session, payment_id) is None:
        raise NotFoundError(f"no payment {payment_id}")
    await run_void(runtime(call), payment_id)
    return Result(status=200, body=await _payment_view(session, payment_id))


async def refund_handler(call: Call, session: AsyncSession) -> Result:
    payment_id = call.path["id"]
    if await payment_owner(session, payment_id) is None:
        raise NotFoundError(f"no payment {payment_id}")
    refund_id = await refunds.start_refund(
        runtime(call), payment_id, _owner(call), call.body["amount_minor"]
    )
    refund = await store.get_refund(session, refund_id)
    return Result(status=201, body=refunds.refund_json(refund), resource_id=refund_id)


async def payout_handler(call: Call, session: AsyncSession) -> Result:
    body = call.body
    payout_id = await refunds.start_payout(
        runtime(call),
        owner=_owner(call),
        account_id=body["account_id"],
        amount_minor=body["amount_minor"],
        currency=body["currency"],
        provider=body["destination"]["provider"],
        bank_token=body["destination"]["bank_token"],
    )
    return Result(
        status=201, body=await refunds.payout_json(session, payout_id), resource_id=payout_id
    )


async def get_payout_handler(call: Call, session: AsyncSession) -> Result:
    payout_id = call.path["id"]
    if await payout_owner(session, payout_id) is None:
        raise NotFoundError(f"no payout {payout_id}")
    return Result(status=200, body=await refunds.payout_json(session, payout_id))


async def webhook_endpoint_handler(call: Call, session: AsyncSession) -> Result:
    body = call.body
    created = await webhook_endpoints.create_endpoint(
        runtime(call),
        session,
        owner=_owner(call),
        url=body["url"],
        event_types=list(body["event_types"]),
        description=body.get("description"),
    )
    # The secret is shown once: a replay of this request answers without it.
    without_secret = {key: value for key, value in created.items() if key != "secret"}
    return Result(status=201, body=created, resource_id=created["id"], replay_body=without_secret)


_PAYMENT_ERRORS: tuple[type[DomainError], ...] = (
    NotFoundError,
    InvalidStateError,
    ProviderDeclinedError,
    NoProviderAvailableError,
)


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            method="POST",
            path="/v1/payments",
            handler=create_payment_handler,
            action="payments.create",
            resource_type="payment",
            summary="Create a payment: risk check, route, authorize, ledger hold (and capture)",
            scopes=("payments:write",),
            success_status=201,
            request_schema=NEW_PAYMENT_SCHEMA,
            response_schema=PAYMENT_SCHEMA,
            idempotent=True,
            errors=(
                ledger_api.UnknownCurrencyError,
                service.KycRequiredError,
                service.CurrencyMismatchError,
                service.UnknownCustomerError,
                service.UnknownAccountError,
                NoProviderAvailableError,
                ProviderDeclinedError,
            ),
            tag="payments",
        ),
        Endpoint(
            method="GET",
            path="/v1/payments/{id}",
            handler=get_payment_handler,
            action="payments.read",
            resource_type="payment",
            summary="Read a payment with its saga steps and ledger transaction ids",
            scopes=("payments:read",),
            response_schema=PAYMENT_SCHEMA,
            errors=(NotFoundError,),
            owner_of=payment_owner,
            tag="payments",
        ),
        Endpoint(
            method="POST",
            path="/v1/payments/{id}/capture",
            handler=capture_handler,
            action="payments.capture",
            resource_type="payment",
            summary="Capture an authorized payment, in full or in part (the rest is released)",
            scopes=("payments:write",),
            request_schema=CAPTURE_SCHEMA,
            response_schema=PAYMENT_SCHEMA,
            idempotent=True,
            errors=(*_PAYMENT_ERRORS, CaptureExceedsAuthorizedError),
            owner_of=payment_owner,
            tag="payments",
        ),
        Endpoint(
            method="POST",
            path="/v1/payments/{id}/void",
            handler=void_handler,
            action="payments.void",
            resource_type="payment",
            summary="Void an authorized payment and release its ledger hold",
            scopes=("payments:write",),
            request_schema=EMPTY_SCHEMA,
            response_schema=PAYMENT_SCHEMA,
            idempotent=True,
            errors=_PAYMENT_ERRORS,
            owner_of=payment_owner,
            tag="payments",
        ),
        Endpoint(
            method="POST",
            path="/v1/payments/{id}/refunds",
            handler=refund_handler,
            action="refunds.create",
            resource_type="payment",
            summary="Refund part or all of the captured amount (several refunds allowed)",
            scopes=("refunds:write",),
            success_status=201,
            request_schema=REFUND_SCHEMA,
            response_schema=REFUND_RESPONSE_SCHEMA,
            idempotent=True,
            errors=(
                *_PAYMENT_ERRORS,
                RefundExceedsCapturedError,
                ledger_api.InsufficientFundsError,
            ),
            owner_of=payment_owner,
            tag="payments",
        ),
        Endpoint(
            method="POST",
            path="/v1/payouts",
            handler=payout_handler,
            action="payouts.create",
            resource_type="payout",
            summary="Pay out from a merchant account: ledger debit, then the provider payout",
            scopes=("payouts:write",),
            success_status=201,
            request_schema=PAYOUT_SCHEMA,
            response_schema=PAYOUT_RESPONSE_SCHEMA,
            idempotent=True,
            errors=(
                ledger_api.InsufficientFundsError,
                ledger_api.UnknownCurrencyError,
                ledger_api.CurrencyMismatchError,
                ledger_api.AccountNotFoundError,
                NoProviderAvailableError,
            ),
            tag="payments",
        ),
        Endpoint(
            method="POST",
            path="/v1/webhook-endpoints",
            handler=webhook_endpoint_handler,
            action="webhook_endpoints.create",
            resource_type="webhook_endpoint",
            summary="Register a webhook endpoint; its signing secret is shown once",
            scopes=("payments:write",),
            success_status=201,
            request_schema=WEBHOOK_ENDPOINT_SCHEMA,
            response_schema=WEBHOOK_ENDPOINT_RESPONSE_SCHEMA,
            idempotent=True,
            errors=(webhook_endpoints.UnsafeWebhookUrlError,),
            tag="payments",
        ),
        Endpoint(
            method="GET",
            path="/v1/payouts/{id}",
            handler=get_payout_handler,
            action="payouts.read",
            resource_type="payout",
            summary="Read a payout with its saga steps",
            scopes=("payouts:write",),
            response_schema=PAYOUT_RESPONSE_SCHEMA,
            errors=(NotFoundError,),
            owner_of=payout_owner,
            tag="payments",
        ),
    ]
