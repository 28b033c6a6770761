"""HTTP endpoints of the review queue (API.md "Risk and reconciliation")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import audit, web
from app.platform.errors import ValidationError
from app.platform.utc import rfc3339_or_none
from app.platform.web import Call, Endpoint, Result, client_ip
from app.risk import domain, reviews
from app.risk.reviews import Review

_READ = ("risk:read",)
_WRITE = ("risk:write",)
MAX_REASON_LENGTH = 500

DECISION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decision", "reason"],
    "properties": {
        "decision": {"type": "string", "enum": ["approve", "reject"]},
        "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_LENGTH},
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time"}
REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "payment_id",
        "customer_id",
        "client_id",
        "amount_minor",
        "currency",
        "reasons",
        "decision_id",
        "status",
        "decision_reason",
        "decided_by",
        "decided_at",
        "created_at",
    ],
    "properties": {
        "id": {"type": "string"},
        "payment_id": {"type": "string"},
        "customer_id": {"type": "string"},
        "client_id": {"type": "string"},
        "amount_minor": {"type": "integer"},
        "currency": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "decision_id": {"type": ["string", "null"]},
        "status": {"type": "string", "enum": list(domain.REVIEW_STATUSES)},
        "decision_reason": {"type": ["string", "null"]},
        "decided_by": {"type": ["string", "null"]},
        "decided_at": _TIME,
        "created_at": {"type": "string", "format": "date-time"},
    },
}
REVIEW_PAGE_SCHEMA = web.page_schema(REVIEW_SCHEMA)
_LIST_PARAMETERS: tuple[dict[str, Any], ...] = (
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only reviews in this status (all statuses when left out).",
        "schema": {"type": "string", "enum": list(domain.REVIEW_STATUSES)},
    },
    *web.PAGE_PARAMETERS,
)


def _time(moment: datetime | None) -> str | None:
    return rfc3339_or_none(moment)


def review_json(review: Review) -> dict[str, Any]:
    return {
        "id": review.id,
        "payment_id": review.payment_id,
        "customer_id": review.customer_id,
        "client_id": review.client_id,
        "amount_minor": review.amount_minor,
        "currency": review.currency,
        "reasons": list(review.reasons),
        "decision_id": review.decision_id,
        "status": review.status,
        "decision_reason": review.decision_reason,
        "decided_by": review.decided_by,
        "decided_at": _time(review.decided_at),
        "created_at": _time(review.created_at),
    }


async def list_reviews(call: Call, session: AsyncSession) -> Result:
    status = call.query.get("status")
    if status is not None and status not in domain.REVIEW_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(domain.REVIEW_STATUSES)}")
    page = await reviews.list_page(
        session,
        status=status,
        limit=web.page_limit(call.query),
        after=web.decode_time_cursor(call.query),
    )
    next_cursor = None
    if page.next_after is not None:
        next_cursor = web.encode_time_cursor(*page.next_after)
    return Result(200, {"data": [review_json(r) for r in page.reviews], "next_cursor": next_cursor})


async def read_review(call: Call, session: AsyncSession) -> Result:
    review = await reviews.get(session, call.path["id"])
    return Result(200, review_json(review), resource_id=review.id)


async def decide_review(call: Call, session: AsyncSession) -> Result:
    caller = call.caller
    verdict: domain.ReviewVerdict = call.body["decision"]
    reason: str = call.body["reason"]
    review = await reviews.decide(
        session,
        call.path["id"],
        verdict=verdict,
        reason=reason,
        decided_by=caller.client_id,
    )
    # The request's own audit record names the action; this one keeps what was decided and
    # why, next to the same OPA decision id, in the same transaction.
    await audit.record(
        session,
        audit.AuditEvent(
            actor=caller.client_id,
            event_type="risk.review.decided",
            outcome="success",
            request_id=call.request_id,
            origin_ip=client_ip(call.request),
            resource_type="risk_review",
            resource_id=review.id,
            decision_id=call.decision_id,
            details={"decision": verdict, "reason": reason, "payment_id": review.payment_id},
        ),
    )
    return Result(200, review_json(review), resource_id=review.id)


def endpoints() -> list[Endpoint]:
    """The risk domain's `/v1` endpoints, for the composition root."""
    return [
        Endpoint(
            method="GET",
            path="/v1/risk/reviews",
            handler=list_reviews,
            action="risk.reviews.list",
            resource_type="risk_review",
            summary="List payments held for manual review, oldest first",
            scopes=_READ,
            response_schema=REVIEW_PAGE_SCHEMA,
            query_parameters=_LIST_PARAMETERS,
            tag="risk",
        ),
        Endpoint(
            method="GET",
            path="/v1/risk/reviews/{id}",
            handler=read_review,
            action="risk.reviews.read",
            resource_type="risk_review",
            summary="Read one review",
            scopes=_READ,
            response_schema=REVIEW_SCHEMA,
            errors=(domain.ReviewNotFoundError,),
            tag="risk",
        ),
        Endpoint(
            method="POST",
            path="/v1/risk/reviews/{id}/decision",
            handler=decide_review,
            action="risk.reviews.decide",
            resource_type="risk_review",
            summary="Approve (the payment resumes) or reject (it is declined) a held payment",
            scopes=_WRITE,
            request_schema=DECISION_SCHEMA,
            response_schema=REVIEW_SCHEMA,
            idempotent=True,
            errors=(domain.ReviewNotFoundError, domain.ReviewAlreadyDecidedError),
            tag="risk",
        ),
    ]
