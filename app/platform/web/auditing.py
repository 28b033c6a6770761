"""The audit records the pipeline writes: refusals by a security check, and outcomes.

A refusal (401, 403, or no policy decision) is counted, logged and written in its own
transaction. An outcome is built here and written by `execution.py` in the same
transaction as the effect.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from starlette.requests import Request

from app.platform import audit
from app.platform.errors import DomainError
from app.platform.web.declarations import Call, Endpoint, Principal, Result, Services
from app.platform.web.middleware import request_id_of

log = structlog.get_logger("moneypath.http")

REJECTIONS = Counter(
    "moneypath_security_rejections_total",
    "Requests refused by a security check, by code.",
    ["code"],
)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def record_rejection(
    services: Services,
    request: Request,
    error: DomainError,
    action: str,
    principal: Principal | None,
    decision_id: str | None = None,
) -> None:
    """Count, log and audit a request that a security check refused."""
    REJECTIONS.labels(code=error.code).inc()
    log.warning(
        "request_rejected",
        code=error.code,
        action=action,
        decision_id=decision_id,
        client_id=principal.client_id if principal else None,
    )
    await audit.record_alone(
        services.sessions,
        audit.AuditEvent(
            actor=principal.client_id if principal else None,
            event_type=action,
            outcome="failure",
            code=error.code,
            request_id=request_id_of(request),
            origin_ip=client_ip(request),
            resource_type=None,
            resource_id=request.path_params.get("id"),
            decision_id=decision_id,
        ),
    )


def outcome_event(
    endpoint: Endpoint, call: Call, result: Result | None, outcome: str, code: str | None
) -> audit.AuditEvent:
    """The audit record of a request that reached its handler."""
    resource_id = call.path.get("id")
    if result is not None and result.resource_id is not None:
        resource_id = result.resource_id
    return audit.AuditEvent(
        actor=call.principal.client_id if call.principal else None,
        event_type=endpoint.action,
        outcome=outcome,
        code=code,
        request_id=call.request_id,
        origin_ip=client_ip(call.request),
        resource_type=endpoint.resource_type,
        resource_id=resource_id,
        decision_id=call.decision_id,
    )
