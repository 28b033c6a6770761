"""Idempotency orchestration: claim the key, run the handler, store the answer.

The handler runs inside one database transaction together with the key's completion and
the audit record, so the three land together or not at all. A business refusal (4xx) is
stored with the key and audited, so a retry gets the same answer; a validation failure or
a 5xx releases the key, so a corrected request or a retry executes again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from app.platform import audit, idempotency, outbox
from app.platform.db import run_in_transaction
from app.platform.errors import DomainError, problem_body
from app.platform.web.auditing import outcome_event
from app.platform.web.declarations import Call, Endpoint, Result, Services
from app.platform.web.responses import (
    json_response,
    problem_response,
    render_json,
    rendered_json_response,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """What an Idempotency-Key is bound to besides its client: the method and the concrete
    path (`/v1/ledger/transactions/txn_A/void`, never the route template)."""

    method: str
    path: str


async def claim_key(
    services: Services,
    target: RequestTarget,
    client_id: str,
    key: str,
    raw: bytes,
    *,
    key_exists: bool = False,
) -> idempotency.Claim | idempotency.StoredResponse:
    """Claim `key` for this client and target, or return the stored answer to replay.

    `key_exists`: an early claim (request_auth/admission.py) already found the key taken,
    so the one-statement attempt is skipped."""
    body_fingerprint = idempotency.fingerprint(raw)
    if services.autocommit_sessions is not None and not key_exists:
        async with services.autocommit_sessions() as session:
            fresh = await idempotency.claim_at_once(
                session,
                client_id=client_id,
                method=target.method,
                path=target.path,
                key=key,
                body_fingerprint=body_fingerprint,
                ttl_s=services.idempotency_ttl_s,
                stale_claim_s=services.idempotency_stale_claim_s,
            )
        if fresh is not None:
            return fresh
    # The key exists (a replay, a holder, a reuse, an expired row): decide under its lock.
    async with services.sessions() as session, session.begin():
        return await idempotency.claim(
            session,
            client_id=client_id,
            method=target.method,
            path=target.path,
            key=key,
            body_fingerprint=body_fingerprint,
            ttl_s=services.idempotency_ttl_s,
            stale_claim_s=services.idempotency_stale_claim_s,
        )


async def release_key(services: Services, held: idempotency.Claim) -> None:
    async with services.sessions() as session, session.begin():
        await idempotency.release(session, held)


async def _completing(services: Services, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """`run_in_transaction`, with a completion's lost claim (which SQL refuses at commit,
    see idempotency.complete) as ClaimLostError."""
    try:
        return await run_in_transaction(services.sessions, work)
    except DBAPIError as error:
        if idempotency.claim_was_lost(error):
            raise idempotency.ClaimLostError("the idempotency claim was taken over") from error
        raise


async def execute(endpoint: Endpoint, call: Call, held: idempotency.Claim | None) -> Response:
    """Run the handler; store and audit its outcome with the effect, in one transaction."""
    services = call.services
    # The answer's JSON, rendered once for both the response and the stored replay (the
    # idempotency row keeps it as jsonb, so the same text serves): None when not rendered.
    rendered: bytes | None = None

    async def work(session: AsyncSession) -> Result:
        nonlocal rendered
        if held is not None:
            # The handler's outbox events ride along with the completion (one statement).
            outbox.collect(session)
        try:
            result = await endpoint.handler(call, session)
        finally:
            emitted = outbox.collected(session)
        event = outcome_event(endpoint, call, result, "success", None) if endpoint.audited else None
        if held is not None:
            stored = result.body if result.replay_body is None else result.replay_body
            rendered = render_json(result.body) if result.replay_body is None else None
            # One statement: the completion, the audit record and the events land together.
            await idempotency.complete(
                session, held, result.status, stored, event, emitted, rendered=rendered
            )
        elif event is not None:
            await audit.record(session, event)
        return result

    try:
        result = await _completing(services, work)
    except DomainError as error:
        return await _refused(endpoint, call, held, error)
    except BaseException:
        if held is not None:
            await release_key(services, held)
        raise
    if rendered is not None:
        return rendered_json_response(result.status, rendered, result.headers)
    return json_response(result.status, result.body, result.headers)


async def _refused(
    endpoint: Endpoint, call: Call, held: idempotency.Claim | None, error: DomainError
) -> Response:
    services = call.services
    request = call.request
    if held is not None and isinstance(error, idempotency.ClaimLostError):
        return problem_response(error, request)
    if error.status >= 500 or (held is not None and error.code == "validation_error"):
        if held is not None:
            await release_key(services, held)
        return problem_response(error, request)
    # A business outcome (4xx): nothing of the effect was written, but the answer is
    # stored with the key and audited, so a retry gets the same answer.
    failure = problem_body(
        error.status,
        error.code,
        error.title,
        error.detail,
        instance=request.url.path,
        extra=error.extra,
    )

    async def remember(session: AsyncSession) -> None:
        event = (
            outcome_event(endpoint, call, None, "failure", error.code) if endpoint.audited else None
        )
        if held is not None:
            await idempotency.complete(session, held, error.status, failure, event)
        elif event is not None:
            await audit.record(session, event)

    try:
        await _completing(services, remember)
    except idempotency.ClaimLostError as lost:
        return problem_response(lost, request)
    return problem_response(error, request)
