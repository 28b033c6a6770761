"""The one request pipeline every `/v1` endpoint goes through, as a list of named stages.

`PIPELINE` below reads top to bottom in API.md's order of checks (routing and its 405
come before, in `routing.py`):

    token (401) -> body size (413) -> signature + nonce (401) -> policy (403)
    -> Idempotency-Key (400/409/422, or a replay) -> body validation (415/422) -> handler

Each stage either passes (returns None), answers early (returns a Response: a replay), or
refuses (raises a DomainError). A refusal first runs the stage's `refused` hook (audit a
security refusal, release a claimed key), then becomes a problem document.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response

from app.platform import auth_limits, idempotency
from app.platform.errors import (
    DomainError,
    ForbiddenError,
    InvariantViolation,
    NotFoundError,
    ValidationError,
)
from app.platform.jsonbody import parse_and_validate
from app.platform.opa import Decision
from app.platform.web.auditing import client_ip, record_rejection
from app.platform.web.bodies import check_content_type, read_body
from app.platform.web.declarations import Call, Endpoint, Principal, Services
from app.platform.web.execution import RequestTarget, claim_key, execute, release_key
from app.platform.web.middleware import request_id_of
from app.platform.web.responses import problem_response, replayed_response

log = structlog.get_logger("moneypath.http")


@dataclass(slots=True)
class Exchange:
    """One request on its way through the stages; each stage fills in what it learned."""

    endpoint: Endpoint
    request: Request
    services: Services
    principal: Principal | None = None
    raw: bytes = b""
    decision: Decision | None = None
    held: idempotency.Claim | None = None
    # The signature stage's early claim of the Idempotency-Key (one statement with the
    # nonce and is_active): `tried` without `claim` means the key already exists.
    early: idempotency.EarlyClaim | None = None
    body: dict[str, Any] = field(default_factory=dict)

    def call(self) -> Call:
        return Call(
            request=self.request,
            principal=self.principal,
            body=self.body,
            path=self.request.path_params,
            query=self.request.query_params,
            request_id=request_id_of(self.request),
            decision_id=self.decision.decision_id if self.decision else None,
            services=self.services,
        )


Check = Callable[[Exchange], Awaitable[Response | None]]
Refused = Callable[[Exchange, DomainError], Awaitable[None]]


async def _nothing_to_undo(exchange: Exchange, error: DomainError) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    check: Check
    refused: Refused = _nothing_to_undo


# ---- the stages, in order -----------------------------------------------------------------


async def authenticate(exchange: Exchange) -> None:
    if exchange.endpoint.authenticated:
        limiter = exchange.services.failure_limiter
        if limiter is not None:
            await limiter.check(auth_limits.subjects(None, client_ip(exchange.request)))
        # A signed request's is_active check is done by the signature stage, in one
        # statement with its nonce (request_auth/admission.py), before anything else.
        deferred = exchange.endpoint.needs_signature and exchange.services.signatures.checks_active
        exchange.principal = await exchange.services.authenticator.authenticate(
            exchange.request, check_active=not deferred
        )


async def read_within_limit(exchange: Exchange) -> None:
    exchange.raw = await read_body(
        exchange.request,
        exchange.endpoint.body_limit_bytes or exchange.services.body_limit_bytes,
    )


def _early_claim(exchange: Exchange) -> idempotency.ClaimRequest | None:
    """What the signature stage may claim with the nonce: a well-formed key of an
    idempotent endpoint (a missing or malformed one is refused later, in its own stage)."""
    if not exchange.endpoint.idempotent:
        return None
    try:
        key = idempotency.check_key(exchange.request.headers.get("idempotency-key"))
    except DomainError:
        return None
    services = exchange.services
    return idempotency.ClaimRequest(
        method=exchange.endpoint.method,
        path=exchange.request.url.path,
        key=key,
        body_fingerprint=idempotency.fingerprint(exchange.raw),
        ttl_s=services.idempotency_ttl_s,
        stale_claim_s=services.idempotency_stale_claim_s,
    )


async def verify_signature(exchange: Exchange) -> None:
    if exchange.endpoint.needs_signature:
        early = await exchange.services.signatures.verify(
            exchange.request, exchange.raw, exchange.principal, _early_claim(exchange)
        )
        if early.tried:
            exchange.early = early
            exchange.held = early.claim


# Every id we issue fits this shape (prefixed ids, attachment digests); anything else names
# no resource, so it is answered 404 before it reaches SQL, the policy or the audit log.
RESOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


async def authorize(exchange: Exchange) -> None:
    endpoint, services = exchange.endpoint, exchange.services
    resource_id = exchange.request.path_params.get("id")
    if resource_id is not None and RESOURCE_ID.fullmatch(resource_id) is None:
        raise NotFoundError("no such resource")
    owner: str | None = None
    if endpoint.owner_of is not None and resource_id is not None:
        async with services.sessions() as session:
            owner = await endpoint.owner_of(session, resource_id)
    resource = {"type": endpoint.resource_type, "id": resource_id, "owner": owner}
    decision = await services.authorizer.decide(exchange.principal, endpoint.action, resource)
    exchange.decision = decision
    structlog.contextvars.bind_contextvars(decision_id=decision.decision_id)
    # One line per decision, allowed or not, so every decision_id can be found in the log.
    log.info(
        "request_authorized" if decision.allowed else "request_denied",
        action=endpoint.action,
        client_id=exchange.principal.client_id if exchange.principal else None,
    )
    if not decision.allowed:
        if decision.conceal:
            # Another client's owned resource answers exactly like a missing one (API.md).
            raise NotFoundError("no such resource")
        raise ForbiddenError("the policy does not allow this request")
    if endpoint.admit is not None and exchange.principal is not None:
        await endpoint.admit(exchange.principal, exchange.raw, services)


async def claim_idempotency_key(exchange: Exchange) -> Response | None:
    if not exchange.endpoint.idempotent:
        return None
    key = idempotency.check_key(exchange.request.headers.get("idempotency-key"))
    if exchange.held is not None:
        return None  # claimed with the nonce
    client_id = exchange.principal.client_id if exchange.principal else "anonymous"
    target = RequestTarget(exchange.endpoint.method, exchange.request.url.path)
    outcome = await claim_key(
        exchange.services,
        target,
        client_id,
        key,
        exchange.raw,
        key_exists=exchange.early is not None and exchange.early.tried,
    )
    if isinstance(outcome, idempotency.StoredResponse):
        return replayed_response(outcome.status, outcome.body)
    exchange.held = outcome
    return None


async def validate_body(exchange: Exchange) -> None:
    schema = exchange.endpoint.request_schema
    check_content_type(exchange.request, exchange.raw)
    exchange.body = parse_and_validate(exchange.raw, schema) if schema else {}
    if schema is None and exchange.raw.strip():
        raise ValidationError("this endpoint takes no body")


async def run_handler(exchange: Exchange) -> Response:
    return await execute(exchange.endpoint, exchange.call(), exchange.held)


# ---- what a refusal undoes or records -----------------------------------------------------


async def audit_security_refusal(exchange: Exchange, error: DomainError) -> None:
    # A 429 is only counted (the limiter's summary audits it): a flood writes no row each.
    limiter = exchange.services.failure_limiter
    if error.status == 401 and limiter is not None:
        await limiter.failed(auth_limits.subjects(None, client_ip(exchange.request)))
    if error.status in (401, 403):
        await record_rejection(
            exchange.services, exchange.request, error, exchange.endpoint.action, exchange.principal
        )


async def audit_policy_refusal(exchange: Exchange, error: DomainError) -> None:
    endpoint, principal = exchange.endpoint, exchange.principal
    if exchange.decision is not None:
        await record_rejection(
            exchange.services,
            exchange.request,
            error,
            endpoint.action,
            principal,
            exchange.decision.decision_id,
        )
        return
    # Fail closed, and leave a trace: a request refused because no decision could be had
    # is audited like any other refusal (the database is usually still up).
    with contextlib.suppress(Exception):
        await record_rejection(
            exchange.services, exchange.request, error, endpoint.action, principal
        )


async def audit_policy_refusal_and_release(exchange: Exchange, error: DomainError) -> None:
    await audit_policy_refusal(exchange, error)
    await release_claimed_key(exchange, error)


async def release_claimed_key(exchange: Exchange, error: DomainError) -> None:
    # Validation failures are not stored: the key is released so that a corrected request
    # with the same key is not refused forever.
    if exchange.held is not None:
        await release_key(exchange.services, exchange.held)


PIPELINE: tuple[Stage, ...] = (
    Stage("token", authenticate, refused=audit_security_refusal),
    Stage("body_size", read_within_limit, refused=audit_security_refusal),
    Stage("signature", verify_signature, refused=audit_security_refusal),
    # The key may already be claimed (with the nonce): a refusal here releases it.
    Stage("policy", authorize, refused=audit_policy_refusal_and_release),
    Stage("idempotency_key", claim_idempotency_key, refused=release_claimed_key),
    Stage("body", validate_body, refused=release_claimed_key),
    Stage("handler", run_handler),
)


async def run_pipeline(endpoint: Endpoint, request: Request) -> Response:
    services: Services = request.app.state.services
    exchange = Exchange(endpoint=endpoint, request=request, services=services)
    for stage in PIPELINE:
        try:
            answer = await stage.check(exchange)
        except DomainError as error:
            await stage.refused(exchange, error)
            return problem_response(error, request)
        except BaseException:
            # An unexpected failure before the handler (which releases its own) must not
            # leave an early claim that refuses every retry until it goes stale.
            if exchange.held is not None and stage.name != "handler":
                with contextlib.suppress(Exception):
                    await release_key(services, exchange.held)
            raise
        if answer is not None:
            return answer
    raise InvariantViolation("pipeline_answers", "the last stage must answer every request")
