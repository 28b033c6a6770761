"""OPA decisions, health and readiness.

Decisions (`evaluate`, `decide`) go through `opa_http.OpaDataApi`: one POST of the input
on a kept-alive connection, read with httptools, about a third of the CPU that
opa-python-client's aiohttp session spent on each one (issue 16). OPA's whole response
document comes back, so the `decision_id` the audit log needs comes with every decision.
Health (`healthy`) goes through the design card's client, opa-python-client (its v3
`AsyncOpaClient`, built with `retries=0`). A decision is asked once and fails closed at once
rather than spending its deadline on retries; `OPA_TIMEOUT_MS` is the per-call limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opa_client import AsyncOpaClient

from app.platform.errors import DependencyUnavailableError
from app.platform.metrics import record_dependency_unavailable, record_opa_decision
from app.platform.opa_http import OpaConnectionError, OpaDataApi


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
        # Connections bind to the running event loop: made on first use, and made anew
        # when a different loop calls (tests run apps on their own loops).
        self._data: OpaDataApi | None = None
        self._client: AsyncOpaClient | None = None
        self._opened: contextlib.AsyncExitStack | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bound(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # The old loop's connections cannot be used (or closed) from this one.
            self._data, self._client, self._opened = None, None, None
            self._loop = loop

    async def _session(self) -> AsyncOpaClient:
        self._bound()
        if self._client is None:
            opened = contextlib.AsyncExitStack()
            self._client = await opened.enter_async_context(
                self._address.client(self._timeout_s, retries=0)
            )
            self._opened = opened
        return self._client

    def _data_api(self) -> OpaDataApi:
        self._bound()
        if self._data is None:
            address = self._address
            self._data = OpaDataApi(
                address.host, address.port, tls=address.tls, timeout_s=self._timeout_s
            )
        return self._data

    async def close(self) -> None:
        if self._data is not None:
            await self._data.close()
        if self._opened is not None:
            await self._opened.aclose()
        self._data = self._client = self._opened = self._loop = None

    async def evaluate(self, package_path: str, input_document: dict[str, Any]) -> dict[str, Any]:
        """Evaluate `data.<package_path>` and return OPA's whole response document."""
        data = self._data_api()
        try:
            body = json.dumps({"input": input_document}, separators=(",", ":")).encode()
            answer = await data.post(package_path, body)
        except (OpaConnectionError, OSError, TimeoutError) as error:
            raise OpaUnavailableError(f"OPA is unreachable: {type(error).__name__}") from None
        if answer.status != 200:
            raise OpaUnavailableError(f"OPA answered {answer.status}")
        try:
            document = json.loads(answer.body)
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
