"""OPA decisions, health and readiness through the design card's client, opa-python-client.

Its v3 `AsyncOpaClient` runs on aiohttp (a C HTTP parser and keep-alive connections, which
is why the request path could use it) and `query_rule` returns OPA's whole response, so the
`decision_id` the audit log needs comes with every decision. On the request path it is
built with `retries=0`: a request fails closed at once rather than spending its deadline on
retries, and `timeout` is the per-call limit (`OPA_TIMEOUT_MS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client import AsyncOpaClient

from app.platform.errors import DependencyUnavailableError
from app.platform.metrics import record_dependency_unavailable, record_opa_decision


class OpaUnavailableError(DependencyUnavailableError):
    code = "authorization_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    decision_id: str | None
    reasons: tuple[str, ...]
    # A refusal to be answered 404: the resource is owned by another client, or missing.
    conceal: bool = False


@dataclass(frozen=True, slots=True)
class OpaAddress:
    """Where OPA listens, in the parts the client takes."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, base_url: str) -> OpaAddress:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"{base_url!r} is not an http(s) URL")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls)

    def client(self, timeout_s: float, retries: int = 0) -> AsyncOpaClient:
        return AsyncOpaClient(
            host=self.host, port=self.port, ssl=self.tls, timeout=timeout_s, retries=retries
        )


class Opa:
    """Asks OPA for decisions. Every failure to get an answer fails closed."""

    def __init__(self, base_url: str, timeout_ms: int) -> None:
        self._address = OpaAddress.parse(base_url)
        self._timeout_s = timeout_ms / 1000
        # The client's aiohttp session binds to the running event loop: made on first use,
        # and made anew when a different loop calls (tests run apps on their own loops).
        self._client: AsyncOpaClient | None = None
        self._opened: contextlib.AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _session(self) -> AsyncOpaClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            opened = contextlib.AsyncExitStack()
            self._client = await opened.enter_async_context(
                self._address.client(self._timeout_s, retries=0)
            )
            self._opened, self._loop = opened, loop
        return self._client

    async def close(self) -> None:
        if self._opened is not None:
            await self._opened.aclose()
        self._client = self._opened = self._loop = None

    async def evaluate(self, package_path: str, input_document: dict[str, Any]) -> dict[str, Any]:
        """Evaluate `data.<package_path>` and return OPA's whole response document."""
        client = await self._session()
        try:
            document = await client.query_rule(input_document, package_path)
        except aiohttp.ClientResponseError as error:
            raise OpaUnavailableError(f"OPA answered {error.status}") from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise OpaUnavailableError(f"OPA is unreachable: {type(error).__name__}") from None
        except ValueError:
            raise OpaUnavailableError("OPA answered with a body that is not JSON") from None
        if not isinstance(document, dict):
            raise OpaUnavailableError("OPA answered with a body that is not a JSON object")
        return document

    async def decide(self, package_path: str, input_document: dict[str, Any]) -> Decision:
        """Ask `<package_path>` for `{allow, reasons}`. An undefined result is a deny."""
        started = time.perf_counter()
        try:
            document = await self.evaluate(package_path, input_document)
        except OpaUnavailableError:
            record_opa_decision("error", time.perf_counter() - started)
            record_dependency_unavailable("opa")
            raise
        result = document.get("result") or {}
        allowed = result.get("allow") is True
        record_opa_decision("allow" if allowed else "deny", time.perf_counter() - started)
        reasons = tuple(str(reason) for reason in result.get("reasons", []) or [])
        return Decision(
            allowed=allowed,
            decision_id=document.get("decision_id"),
            reasons=reasons,
            conceal=not allowed and result.get("conceal") is True,
        )

    async def healthy(self) -> bool:
        """Readiness: OPA is up and has activated its policy bundles."""
        client = await self._session()
        healthy: bool = await client.check_health(query={"bundles": "true"})
        return healthy


class OpaAuthorizer:
    """The `Authorizer` every service uses: asks `data.moneypath.authz.decision` (allow,
    conceal, reasons) for each request."""

    def __init__(self, opa: Opa, package_path: str = "moneypath/authz/decision") -> None:
        self._opa = opa
        self._package_path = package_path

    @property
    def package_path(self) -> str:
        return self._package_path

    async def decide(self, principal: Any, action: str, resource: Mapping[str, Any]) -> Decision:
        principal_document = (
            {"client_id": principal.client_id, "scopes": sorted(principal.scopes)}
            if principal is not None
            else None
        )
        return await self._opa.decide(
            self._package_path,
            {"principal": principal_document, "action": action, "resource": dict(resource)},
        )
