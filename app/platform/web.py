"""The one request pipeline every `/v1` endpoint goes through.

An `Endpoint` declares what a route needs (action, resource, schema, idempotency) and
`endpoint_route` turns it into a Starlette route that runs, in API.md's order:

    routing (405) -> token (401) -> signature + nonce (401) -> OPA (403)
    -> Idempotency-Key (400/409/422) -> body validation (422) -> handler

The handler runs inside one database transaction together with the idempotency
completion and the audit record, so the three land together or not at all.
The same declarations feed the served OpenAPI document, so the two cannot drift.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform import audit, idempotency
from app.platform.db import run_in_transaction
from app.platform.errors import (
    PROBLEM_CONTENT_TYPE,
    DomainError,
    ForbiddenError,
    ValidationError,
    problem_body,
)
from app.platform.jsonbody import parse_and_validate
from app.platform.opa import Decision

log = structlog.get_logger("moneypath.http")

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_CURSOR_LENGTH = 512
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REQUESTS = Counter(
    "moneypath_http_requests_total",
    "HTTP requests by route, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "moneypath_http_request_duration_seconds",
    "Request latency by route.",
    ["route", "method"],
)
REJECTIONS = Counter(
    "moneypath_security_rejections_total",
    "Requests refused by a security check, by code.",
    ["code"],
)


class PayloadTooLargeError(ValidationError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API client, its granted scopes and the key its token binds."""

    client_id: str
    scopes: frozenset[str]
    key_id: str | None = None
    # The public JWK the token binds (RFC 7800 `cnf.jwk`); requests must be signed with it.
    key_jwk: Mapping[str, Any] | None = None


class Authenticator(Protocol):
    async def authenticate(self, request: Request) -> Principal:
        """Return the caller or raise UnauthorizedError (401)."""
        ...


class SignatureVerifier(Protocol):
    async def verify(self, request: Request, body: bytes, principal: Principal | None) -> None:
        """Check the RFC 9421 signature and nonce, or raise a 401 DomainError."""
        ...


class Authorizer(Protocol):
    async def decide(
        self, principal: Principal | None, action: str, resource: Mapping[str, Any]
    ) -> Decision:
        """Ask the policy engine; raise DependencyUnavailableError when it cannot answer."""
        ...


@dataclass(slots=True)
class Services:
    """What the pipeline needs from the composition root; stored on `app.state.services`."""

    sessions: async_sessionmaker[AsyncSession]
    authenticator: Authenticator
    signatures: SignatureVerifier
    authorizer: Authorizer
    body_limit_bytes: int
    idempotency_ttl_s: int
    idempotency_stale_claim_s: int
    extras: dict[str, Any] = field(default_factory=dict)
    # Sessions on db.create_autocommit_engine: one round trip per statement and no WAL
    # flush wait, for the idempotency claim's fast path only (never for an effect).
    autocommit_sessions: async_sessionmaker[AsyncSession] | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Everything a handler may use about the request, already checked."""

    request: Request
    principal: Principal | None
    body: dict[str, Any]
    path: Mapping[str, str]
    query: Mapping[str, str]
    request_id: str
    decision_id: str | None
    services: Services


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    body: Any
    resource_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # What an idempotent replay answers, when it must differ from `body`: a secret shown
    # once (a new client's secret) is neither stored with the key nor replayed.
    replay_body: Any = None


Handler = Callable[[Call, AsyncSession], Awaitable[Result]]
OwnerLookup = Callable[[AsyncSession, str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A declared `/v1` operation: the route, its policy inputs and its contract."""

    method: str
    path: str
    handler: Handler
    action: str
    resource_type: str
    summary: str
    scopes: tuple[str, ...]
    success_status: int = 200
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] | None = None
    query_parameters: tuple[dict[str, Any], ...] = ()
    idempotent: bool = False
    authenticated: bool = True
    signed: bool | None = None  # None: signed whenever the method changes state
    error_codes: tuple[str, ...] = ()
    owner_of: OwnerLookup | None = None
    tag: str = "default"
    audit_reads: bool = False  # reads are audited only where a control demands it
    body_limit_bytes: int | None = None  # None: the service-wide limit (settings)

    @property
    def audited(self) -> bool:
        return self.method in MUTATING_METHODS or self.audit_reads

    @property
    def needs_signature(self) -> bool:
        if self.signed is not None:
            return self.signed
        return self.authenticated and self.method in MUTATING_METHODS


def request_id_of(request: Request) -> str:
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value else "unknown"


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def problem_response(error: DomainError, request: Request | None = None) -> Response:
    body = problem_body(
        error.status,
        error.code,
        error.title,
        error.detail,
        instance=request.url.path if request is not None else None,
        extra=error.extra,
    )
    return JSONResponse(
        body, status_code=error.status, media_type=PROBLEM_CONTENT_TYPE, headers=error.headers
    )


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """Read the body, refusing more than `limit_bytes` without buffering the excess."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValidationError("Content-Length is not a number")
        if int(declared) > limit_bytes:
            raise PayloadTooLargeError(f"body larger than {limit_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise PayloadTooLargeError(f"body larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_content_type(request: Request, body: bytes) -> None:
    if not body:
        return
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        from app.platform.jsonbody import UnsupportedMediaTypeError

        raise UnsupportedMediaTypeError("send the body as application/json")


async def _security_rejection(
    services: Services,
    request: Request,
    error: DomainError,
    action: str,
    principal: Principal | None,
    decision_id: str | None = None,
) -> None:
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


async def _run(endpoint: Endpoint, request: Request) -> Response:
    services: Services = request.app.state.services
    principal: Principal | None = None
    try:
        if endpoint.authenticated:
            principal = await services.authenticator.authenticate(request)
        raw = await read_body(request, endpoint.body_limit_bytes or services.body_limit_bytes)
        if endpoint.needs_signature:
            await services.signatures.verify(request, raw, principal)
    except DomainError as error:
        if error.status in (401, 403):
            await _security_rejection(services, request, error, endpoint.action, principal)
        return problem_response(error, request)

    resource_id = request.path_params.get("id")
    owner: str | None = None
    if endpoint.owner_of is not None and resource_id is not None:
        async with services.sessions() as session:
            owner = await endpoint.owner_of(session, resource_id)
    resource = {"type": endpoint.resource_type, "id": resource_id, "owner": owner}
    try:
        decision = await services.authorizer.decide(principal, endpoint.action, resource)
    except DomainError as error:
        # Fail closed, and leave a trace: a request refused because no decision could be
        # had is audited like any other refusal (the database is usually still up).
        with contextlib.suppress(Exception):
            await _security_rejection(services, request, error, endpoint.action, principal)
        return problem_response(error, request)
    structlog.contextvars.bind_contextvars(decision_id=decision.decision_id)
    # One line per decision, allowed or not, so every decision_id can be found in the log.
    log.info(
        "request_authorized" if decision.allowed else "request_denied",
        action=endpoint.action,
        client_id=principal.client_id if principal else None,
    )
    if not decision.allowed:
        denied = ForbiddenError("the policy does not allow this request")
        await _security_rejection(
            services, request, denied, endpoint.action, principal, decision.decision_id
        )
        return problem_response(denied, request)

    client_id = principal.client_id if principal else "anonymous"
    held: idempotency.Claim | None = None
    try:
        if endpoint.idempotent:
            key = idempotency.check_key(request.headers.get("idempotency-key"))
            outcome = await _claim(services, endpoint, client_id, key, raw)
            if isinstance(outcome, idempotency.StoredResponse):
                headers = {"Idempotent-Replayed": "true"}
                if outcome.status >= 400:
                    return JSONResponse(
                        outcome.body,
                        status_code=outcome.status,
                        media_type=PROBLEM_CONTENT_TYPE,
                        headers=headers,
                    )
                return json_response(outcome.status, outcome.body, headers)
            held = outcome
        _check_content_type(request, raw)
        body = parse_and_validate(raw, endpoint.request_schema) if endpoint.request_schema else {}
        if endpoint.request_schema is None and raw.strip():
            raise ValidationError("this endpoint takes no body")
    except DomainError as error:
        # Validation failures are not stored: the key is released so that a corrected
        # request with the same key is not refused forever.
        if held is not None:
            await _release(services, held)
        return problem_response(error, request)

    call = Call(
        request=request,
        principal=principal,
        body=body,
        path=request.path_params,
        query=request.query_params,
        request_id=request_id_of(request),
        decision_id=decision.decision_id,
        services=services,
    )

    async def work(session: AsyncSession) -> Result:
        result = await endpoint.handler(call, session)
        event = _audit_event(endpoint, call, result, "success", None) if endpoint.audited else None
        if held is not None:
            stored = result.body if result.replay_body is None else result.replay_body
            # One statement for both: the completion and the audit record land together.
            await idempotency.complete(session, held, result.status, stored, event)
        elif event is not None:
            await audit.record(session, event)
        return result

    try:
        result = await run_in_transaction(services.sessions, work)
    except DomainError as error:
        if held is not None and isinstance(error, idempotency.ClaimLostError):
            return problem_response(error, request)
        if error.status >= 500 or (held is not None and error.code == "validation_error"):
            if held is not None:
                await _release(services, held)
            return problem_response(error, request)
        # A business outcome (4xx): nothing of the effect was written, but the answer is
        # stored with the key and audited, so a retry gets the same answer.
        refused = error
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
                _audit_event(endpoint, call, None, "failure", refused.code)
                if endpoint.audited
                else None
            )
            if held is not None:
                await idempotency.complete(session, held, refused.status, failure, event)
            elif event is not None:
                await audit.record(session, event)

        try:
            await run_in_transaction(services.sessions, remember)
        except idempotency.ClaimLostError as lost:
            return problem_response(lost, request)
        return problem_response(error, request)
    except BaseException:
        if held is not None:
            await _release(services, held)
        raise
    return json_response(result.status, result.body, result.headers)


async def _claim(
    services: Services, endpoint: Endpoint, client_id: str, key: str, raw: bytes
) -> idempotency.Claim | idempotency.StoredResponse:
    body_fingerprint = idempotency.fingerprint(raw)
    if services.autocommit_sessions is not None:
        async with services.autocommit_sessions() as session:
            fresh = await idempotency.claim_at_once(
                session,
                client_id=client_id,
                method=endpoint.method,
                route=endpoint.path,
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
            method=endpoint.method,
            route=endpoint.path,
            key=key,
            body_fingerprint=body_fingerprint,
            ttl_s=services.idempotency_ttl_s,
            stale_claim_s=services.idempotency_stale_claim_s,
        )


async def _release(services: Services, held: idempotency.Claim) -> None:
    async with services.sessions() as session, session.begin():
        await idempotency.release(session, held)


def _audit_event(
    endpoint: Endpoint, call: Call, result: Result | None, outcome: str, code: str | None
) -> audit.AuditEvent:
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


def endpoint_route(endpoint: Endpoint) -> Route:
    async def asgi_endpoint(request: Request) -> Response:
        started = time.perf_counter()
        response = await _run(endpoint, request)
        LATENCY.labels(route=endpoint.path, method=endpoint.method).observe(
            time.perf_counter() - started
        )
        REQUESTS.labels(
            route=endpoint.path, method=endpoint.method, status=str(response.status_code)
        ).inc()
        return response

    return Route(endpoint.path, asgi_endpoint, methods=[endpoint.method], name=endpoint.action)


def endpoint_routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """Group endpoints by path, so an unknown method on a known path is a 405."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    routes: list[Route] = []
    for path, methods in by_path.items():
        handlers = {method: endpoint_route(ep) for method, ep in methods.items()}

        def make(table: dict[str, Route]) -> Callable[[Request], Awaitable[Response]]:
            async def dispatch(request: Request) -> Response:
                route = table[request.method if request.method != "HEAD" else "GET"]
                response: Response = await route.endpoint(request)
                return response

            return dispatch

        routes.append(Route(path, make(handlers), methods=list(methods)))
    return routes


# ---- pagination -------------------------------------------------------------------------


def page_limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise ValidationError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def encode_cursor(position: Mapping[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: Mapping[str, str]) -> dict[str, Any] | None:
    raw = query.get("cursor")
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_CURSOR_LENGTH:
        raise ValidationError("cursor is too long")
    try:
        padded = raw + "=" * (-len(raw) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise ValidationError("cursor is not one we issued") from None
    if not isinstance(value, dict):
        raise ValidationError("cursor is not one we issued")
    return value


# ---- middleware and handlers ------------------------------------------------------------


class RequestIdMiddleware:
    """Give every request an id (the caller's, if sane), log it, and echo it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if _REQUEST_ID.match(incoming) else "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope.get("method"), path=scope.get("path")
        )

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    body = problem_body(
        exc.status_code, code, str(exc.detail), str(exc.detail), instance=request.url.path
    )
    return JSONResponse(
        body,
        status_code=exc.status_code,
        media_type=PROBLEM_CONTENT_TYPE,
        headers=dict(exc.headers or {}),
    )


async def domain_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return problem_response(exc, request)


async def unhandled_error_handler(request: Request, exc: Exception) -> Response:
    # Log the type only: a message may carry SQL or secrets, and neither belongs in a log.
    log.error("unhandled_error", error_type=type(exc).__name__)
    body = problem_body(
        500,
        "internal_error",
        "Internal error",
        "the request failed; quote the request id when reporting it",
        instance=request.url.path,
        extra={"request_id": request_id_of(request)},
    )
    return JSONResponse(body, status_code=500, media_type=PROBLEM_CONTENT_TYPE)
