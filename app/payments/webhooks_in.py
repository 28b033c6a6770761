"""Inbound provider webhooks: `POST /v1/webhooks/providers/{provider}`.

- The signature is checked with that provider's own secret (Standard Webhooks).
- The `webhook-id` is recorded in the same transaction as the event's effect, so it is
  "seen" exactly when the effect commits: a crash in between makes the retry apply it.
- Effects go through the saga's idempotent settle functions and the status table, so a
  duplicate does nothing and a late event (an `authorized` after `captured`) is ignored.
- A webhook that fails verification is not trusted at all: at most it tells us which
  payment to ask the provider about (`lookup`), and the provider's answer is applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.payments import recovery, refunds, store
from app.payments.domain import PaymentEvent
from app.payments.provider_outcomes import apply_provider_outcome
from app.payments.saga import Runtime
from app.platform.errors import ConflictError, DomainError, InvariantViolation, NotFoundError
from app.platform.web import problem_response, read_body
from app.providers.api import (
    ProviderEvent,
    ProviderEventType,
    ProviderOperation,
    ProviderOutcome,
    ProviderResult,
    ProviderUnavailableError,
    UnknownProviderError,
    WebhookSignatureError,
)

log = structlog.get_logger("moneypath.payments.webhooks_in")

MAX_BODY_BYTES = 64 * 1024
MAX_HINTS = 20
PATH = "/v1/webhooks/providers/{provider}"

RECEIVED = Counter(
    "moneypath_provider_webhooks_total",
    "Provider webhooks received, by provider and outcome.",
    ["provider", "outcome"],
)


class EventOutOfOrderError(ConflictError):
    """The event needs a state the payment has not reached; the provider should retry."""

    title = "Event arrived before the state it follows"


_PAYMENT_EVENTS: dict[
    ProviderEventType, tuple[PaymentEvent, ProviderOutcome, ProviderOperation]
] = {
    ProviderEventType.AUTHORIZED: (
        PaymentEvent.AUTHORIZED,
        ProviderOutcome.APPROVED,
        ProviderOperation.AUTHORIZE,
    ),
    ProviderEventType.DECLINED: (
        PaymentEvent.PROVIDER_DECLINED,
        ProviderOutcome.DECLINED,
        ProviderOperation.AUTHORIZE,
    ),
    ProviderEventType.CAPTURED: (
        PaymentEvent.CAPTURED,
        ProviderOutcome.APPROVED,
        ProviderOperation.CAPTURE,
    ),
    ProviderEventType.VOIDED: (
        PaymentEvent.VOIDED,
        ProviderOutcome.APPROVED,
        ProviderOperation.VOID,
    ),
}


def _result(
    event: ProviderEvent, outcome: ProviderOutcome, operation: ProviderOperation
) -> ProviderResult:
    return ProviderResult(
        provider=event.provider,
        operation=operation,
        outcome=outcome,
        provider_reference=event.provider_reference,
        operation_reference=event.operation_reference,
        amount_minor=event.amount_minor,
        currency=event.currency,
        raw_status=event.raw_type,
        decline_code=None,
        attempts=0,
    )


def _saga_of(event: ProviderEvent) -> str | None:
    """Our saga id from the idempotency key we sent (`pay_...:authorize`, `ref_...`, `po_...`)."""
    if event.idempotency_key is None:
        return None
    return event.idempotency_key.split(":", 1)[0]


async def apply_event(session: AsyncSession, event: ProviderEvent) -> str:
    """Record the webhook id and apply its effect in this one transaction."""
    first = (
        await session.execute(
            text(
                "INSERT INTO payments.inbound_webhooks (provider, webhook_id, event_type, outcome)"
                " VALUES (:provider, :id, :type, 'received') ON CONFLICT DO NOTHING RETURNING 1"
            ),
            {"provider": event.provider, "id": event.event_id, "type": event.type.value},
        )
    ).first()
    if first is None:
        return "duplicate"
    outcome, subject = await _effect(session, event)
    if outcome == "too_early":
        raise EventOutOfOrderError("the payment has not reached the state this event follows")
    await session.execute(
        text(
            "UPDATE payments.inbound_webhooks SET outcome = :outcome, payment_id = :subject"
            " WHERE provider = :provider AND webhook_id = :id"
        ),
        {"outcome": outcome, "subject": subject, "provider": event.provider, "id": event.event_id},
    )
    return outcome


async def _effect(session: AsyncSession, event: ProviderEvent) -> tuple[str, str | None]:
    saga_id = _saga_of(event)
    if event.type in (ProviderEventType.PAYOUT_PAID, ProviderEventType.PAYOUT_FAILED):
        if saga_id is None or not saga_id.startswith("po_"):
            return "unknown_subject", None
        outcome = (
            ProviderOutcome.APPROVED
            if event.type is ProviderEventType.PAYOUT_PAID
            else ProviderOutcome.DECLINED
        )
        status = await refunds.settle_payout(
            session, saga_id, _result(event, outcome, ProviderOperation.PAYOUT)
        )
        return f"payout_{status}", saga_id
    row = await store.payment_by_provider_ref(
        session, event.provider, event.provider_reference, lock=True
    )
    if row is None and saga_id is not None and saga_id.startswith("pay_"):
        row = await store.find_payment(session, saga_id, lock=True)
        if row is not None and row.provider != event.provider:
            row = None
    if row is None:
        return "unknown_subject", None
    if event.type is ProviderEventType.REFUNDED:
        if saga_id is None or not saga_id.startswith("ref_"):
            return "unknown_subject", row.id
        status = await refunds.settle_refund(
            session,
            row.id,
            saga_id,
            _result(event, ProviderOutcome.APPROVED, ProviderOperation.REFUND),
        )
        return f"refund_{status}", row.id
    mapped = _PAYMENT_EVENTS.get(event.type)
    if mapped is None:
        return "ignored", row.id
    payment_event, outcome, operation = mapped
    return await apply_provider_outcome(
        session, row, payment_event, _result(event, outcome, operation)
    ), row.id


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    if depth > 4:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value[:MAX_HINTS]:
            yield from _strings(item, depth + 1)


async def check_unverified(rt: Runtime, provider: str, body: bytes) -> int:
    """Use an unverifiable body only as a hint of which steps to ask the provider about."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return 0
    hints = [item for item in _strings(parsed) if 0 < len(item) <= 128][:MAX_HINTS]
    if not hints:
        return 0

    async def steps(session: AsyncSession) -> list[store.StepRow]:
        rows = await session.execute(
            text(
                """
                SELECT s.id FROM payments.steps s
                LEFT JOIN payments.payments p ON p.id = s.saga_id
                WHERE s.status = 'started' AND s.provider = :provider
                  AND (p.provider_ref = ANY(:hints) OR s.provider_key = ANY(:hints)
                       OR s.saga_id = ANY(:hints))
                LIMIT 5
                """
            ),
            {"provider": provider, "hints": hints},
        )
        ids = [int(step_id) for (step_id,) in rows]
        found: list[store.StepRow] = []
        for step_id in ids:
            sql = text("SELECT saga_id FROM payments.steps WHERE id = :id")
            saga_id = (await session.execute(sql, {"id": step_id})).scalar_one()
            found.extend(
                step for step in await store.steps_of(session, saga_id) if step.id == step_id
            )
        return found

    checked = 0
    for step in await rt.tx(steps):
        try:
            checked += int(await recovery.recover_step(rt, step))
        except (ProviderUnavailableError, DomainError):
            continue
    return checked


async def receive(request: Request) -> Response:
    provider = request.path_params["provider"]
    rt = getattr(request.app.state.services, "payments", None)
    if not isinstance(rt, Runtime):
        raise InvariantViolation("payments_runtime", "the composition root did not start payments")
    try:
        body = await read_body(request, MAX_BODY_BYTES)
    except DomainError as error:
        return problem_response(error, request)
    try:
        event = rt.providers.verify_webhook(provider, dict(request.headers), body)
    except UnknownProviderError as error:
        RECEIVED.labels(provider="unknown", outcome="unknown_provider").inc()
        return problem_response(NotFoundError(error.detail), request)
    except WebhookSignatureError as error:
        RECEIVED.labels(provider=provider, outcome="unverified").inc()
        log.warning("provider_webhook_unverified", provider=provider)
        await check_unverified(rt, provider, body)
        return problem_response(error, request)
    try:
        outcome = await rt.tx(lambda s: apply_event(s, event))
    except DomainError as error:
        RECEIVED.labels(provider=provider, outcome=error.code).inc()
        return problem_response(error, request)
    RECEIVED.labels(provider=provider, outcome=outcome).inc()
    log.info("provider_webhook", provider=provider, webhook_id=event.event_id, outcome=outcome)
    return JSONResponse({"received": True, "outcome": outcome})


def routes() -> list[Route]:
    return [Route(PATH, receive, methods=["POST"])]


def openapi_paths() -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        PATH: {
            "post": {
                "operationId": "payments.webhooks.providers.receive",
                "summary": "Provider events, signed with the provider's secret",
                "tags": ["payments"],
                "security": [],
                "parameters": [
                    {
                        "name": "provider",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["acme", "globex"]},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": {
                    "200": {
                        "description": "Applied, ignored as stale, or a duplicate",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "received": {"type": "boolean"},
                                        "outcome": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "401": {
                        "description": "Signature invalid (the provider is asked instead)",
                        "content": problem,
                    },
                    "404": {"description": "Unknown provider", "content": problem},
                    "409": {
                        "description": "Arrived before the state it follows; retry later",
                        "content": problem,
                    },
                    "413": {"description": "Body too large", "content": problem},
                },
            }
        }
    }
