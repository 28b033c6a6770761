"""OPA decisions over OPA's REST data API.

We call the REST API with httpx instead of opa-python-client because we need the
`decision_id` that OPA returns with each decision (for the audit log) and an async client
with a strict per-call timeout; opa-python-client returns only `result` and brings aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from app.platform.errors import DependencyUnavailableError


class OpaUnavailableError(DependencyUnavailableError):
    code = "authorization_unavailable"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    decision_id: str | None
    reasons: tuple[str, ...]


class Opa:
    """Asks OPA for decisions. Every failure to get an answer fails closed."""

    def __init__(self, base_url: str, timeout_ms: int) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(timeout_ms / 1000),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def evaluate(self, package_path: str, input_document: dict[str, Any]) -> dict[str, Any]:
        """Evaluate `data.<package_path>` and return OPA's whole response document."""
        try:
            response = await self._client.post(
                f"/v1/data/{package_path}", json={"input": input_document}
            )
        except httpx.HTTPError as error:
            raise OpaUnavailableError(f"OPA is unreachable: {type(error).__name__}") from None
        if response.status_code != 200:
            raise OpaUnavailableError(f"OPA answered {response.status_code}")
        document: dict[str, Any] = response.json()
        return document

    async def decide(self, package_path: str, input_document: dict[str, Any]) -> Decision:
        """Ask `<package_path>` for `{allow, reasons}`. An undefined result is a deny."""
        document = await self.evaluate(package_path, input_document)
        result = document.get("result") or {}
        allowed = result.get("allow") is True
        reasons = tuple(str(reason) for reason in result.get("reasons", []) or [])
        return Decision(allowed=allowed, decision_id=document.get("decision_id"), reasons=reasons)

    async def healthy(self) -> bool:
        try:
            response = await self._client.get("/health", params={"bundles": "true"})
        except httpx.HTTPError:
            return False
        return response.status_code == 200


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
