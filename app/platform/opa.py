"""OPA decisions over OPA's REST data API.

We call the REST API ourselves instead of using opa-python-client because we need the
`decision_id` that OPA returns with each decision (for the audit log) and a strict
per-call timeout. The client is aiohttp: every signed request makes one OPA call, and
aiohttp's C HTTP parser costs about a third of the CPU of httpx's pure-Python h11 per
call (loadtests/bench_ledger.py), over the same keep-alive connections.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from app.platform.errors import DependencyUnavailableError

MAX_CONNECTIONS = 64


class OpaUnavailableError(DependencyUnavailableError):
    code = "authorization_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    decision_id: str | None
    reasons: tuple[str, ...]
    # A refusal to be answered 404: the resource is owned by another client, or missing.
    conceal: bool = False


class Opa:
    """Asks OPA for decisions. Every failure to get an answer fails closed."""

    def __init__(self, base_url: str, timeout_ms: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_ms / 1000)
        # aiohttp binds a session to the running event loop, so it is made on first use.
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                json_serialize=json.dumps,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def evaluate(self, package_path: str, input_document: dict[str, Any]) -> dict[str, Any]:
        """Evaluate `data.<package_path>` and return OPA's whole response document."""
        try:
            async with self._client().post(
                f"{self._base_url}/v1/data/{package_path}", json={"input": input_document}
            ) as response:
                if response.status != 200:
                    raise OpaUnavailableError(f"OPA answered {response.status}")
                document = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError) as error:
            raise OpaUnavailableError(f"OPA is unreachable: {type(error).__name__}") from None
        except ValueError:
            raise OpaUnavailableError("OPA answered with a body that is not JSON") from None
        if not isinstance(document, dict):
            raise OpaUnavailableError("OPA answered with a body that is not a JSON object")
        return document

    async def decide(self, package_path: str, input_document: dict[str, Any]) -> Decision:
        """Ask `<package_path>` for `{allow, reasons}`. An undefined result is a deny."""
        document = await self.evaluate(package_path, input_document)
        result = document.get("result") or {}
        allowed = result.get("allow") is True
        reasons = tuple(str(reason) for reason in result.get("reasons", []) or [])
        return Decision(
            allowed=allowed,
            decision_id=document.get("decision_id"),
            reasons=reasons,
            conceal=not allowed and result.get("conceal") is True,
        )

    async def healthy(self) -> bool:
        try:
            async with self._client().get(
                f"{self._base_url}/health", params={"bundles": "true"}
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


class OpaAuthorizer:
    """The `Authorizer` every service uses: asks `data.moneypath.authz` for each request."""

    def __init__(self, opa: Opa, package_path: str = "moneypath/authz") -> None:
        self._opa = opa
        self._package_path = package_path

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
