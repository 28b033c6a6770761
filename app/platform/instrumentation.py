"""Measuring the request path without touching its stages.

The authenticator, the signature verifier and the authorizer that a service hands to the
pipeline are wrapped here, once, by `instrument(services)`: each call is timed into
`moneypath_authorization_duration_seconds{stage}`, and signature refusals are counted by
code. `OutcomeMetricsMiddleware` reads each response on its way out to count idempotent
replays and ledger writes by outcome (the problem `code`, read from the problem body).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform import metrics
from app.platform.errors import DomainError
from app.platform.opa import Decision

# A problem document is small; reading more than this for a `code` is never needed.
MAX_PROBLEM_BYTES = 8192
_ID_SEGMENT = re.compile(r"/[a-z]{2,5}_[0-9A-Za-z]{6,}")
_LEDGER_OPERATIONS = {
    "/v1/ledger/accounts": "open_account",
    "/v1/ledger/transactions": "create_transaction",
    "/v1/ledger/transactions/batch": "create_batch",
    "/v1/ledger/transactions/{id}/post": "post_transaction",
    "/v1/ledger/transactions/{id}/void": "void_transaction",
    "/v1/ledger/transactions/{id}/reverse": "reverse_transaction",
}


def route_template(path: str) -> str:
    """`/v1/ledger/transactions/txn_9f.../void` -> `/v1/ledger/transactions/{id}/void`."""
    return _ID_SEGMENT.sub("/{id}", path)


class TimedAuthenticator:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def authenticate(self, request: Request, *, check_active: bool = True) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.authenticate(request, check_active=check_active)
        finally:
            metrics.record_authorization("token", time.perf_counter() - started)


class TimedSignatureVerifier:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def checks_active(self) -> bool:
        return bool(getattr(self._inner, "checks_active", False))

    async def verify(self, request: Request, body: bytes, principal: Any, claim: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await self._inner.verify(request, body, principal, claim)
        except DomainError as error:
            metrics.record_signature_rejection(error.code)
            raise
        finally:
            metrics.record_authorization("signature", time.perf_counter() - started)


class TimedAuthorizer:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def decide(self, principal: Any, action: str, resource: Mapping[str, Any]) -> Decision:
        started = time.perf_counter()
        try:
            decision: Decision = await self._inner.decide(principal, action, resource)
        finally:
            metrics.record_authorization("policy", time.perf_counter() - started)
        if decision.allowed:
            metrics.record_authorized_request()
        return decision


def instrument(services: Any) -> None:
    """Wrap a Services' authenticator, signature verifier and authorizer in place (once)."""
    if not isinstance(services.authenticator, TimedAuthenticator):
        services.authenticator = TimedAuthenticator(services.authenticator)
    if not isinstance(services.signatures, TimedSignatureVerifier):
        services.signatures = TimedSignatureVerifier(services.signatures)
    if not isinstance(services.authorizer, TimedAuthorizer):
        services.authorizer = TimedAuthorizer(services.authorizer)


class OutcomeMetricsMiddleware:
    """Counts replays and ledger writes by outcome from the responses as they leave."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        route = route_template(scope["path"])
        operation = _LEDGER_OPERATIONS.get(route) if scope["method"] == "POST" else None
        state: dict[str, Any] = {"status": 500, "problem": False, "body": b""}

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                # One pass for the two headers read here (no dict of all of them); as with
                # a dict, a repeated header's last value counts.
                replayed, content_type = False, b""
                for name, value in message.get("headers", ()):
                    lowered = name.lower()
                    if lowered == b"idempotent-replayed":
                        replayed = value == b"true"
                    elif lowered == b"content-type":
                        content_type = value
                if replayed:
                    metrics.record_idempotent_replay(route)
                state["problem"] = content_type.startswith(b"application/problem+json")
            elif (
                message["type"] == "http.response.body"
                and operation
                and state["problem"]
                and len(state["body"]) < MAX_PROBLEM_BYTES
            ):
                state["body"] += message.get("body", b"")[:MAX_PROBLEM_BYTES]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            if operation is not None:
                metrics.record_ledger_write(operation, _outcome(state))


def _outcome(state: Mapping[str, Any]) -> str:
    status = int(state["status"])
    if status < 400:
        return "success"
    if not state["problem"]:
        return "error"
    try:
        code = json.loads(state["body"]).get("code")
    except (ValueError, AttributeError):
        return "error"
    # Codes are a closed, documented set; anything else is not a label value.
    return code if isinstance(code, str) and re.fullmatch(r"[a-z_]{1,48}", code) else "error"
