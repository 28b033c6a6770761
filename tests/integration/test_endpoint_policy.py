"""Each declared Endpoint's scopes and policies/authz.rego say the same thing (real OPA).

`Endpoint.scopes` feeds the OpenAPI document; `action_scopes` in authz.rego decides. This
asks OPA about every declared endpoint of both services: a token with exactly the
endpoint's scopes is allowed, and a token with every other scope is denied.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

from app.entrypoints.asgi import all_endpoints
from app.entrypoints.devstack import Ports, Stack
from app.entrypoints.launchers.processes import REPO_ROOT
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.web import Endpoint, Principal
from evidence import endpoints as evidence_endpoints

CALLER = "cli_endpoint_policy"


def _declared() -> list[Endpoint]:
    return [e for e in (*all_endpoints(), *evidence_endpoints.endpoints()) if e.authenticated]


def _disagreements(opa_url: str, endpoints: Sequence[Endpoint]) -> list[str]:
    """Every endpoint whose scopes OPA does not honour, as one line each."""
    every_scope = frozenset(scope for endpoint in endpoints for scope in endpoint.scopes)

    async def ask() -> list[str]:
        opa = Opa(opa_url, timeout_ms=5000)
        authorizer = OpaAuthorizer(opa)
        found: list[str] = []
        try:
            for endpoint in endpoints:
                resource = {
                    "type": endpoint.resource_type,
                    "id": "res_policy" if "{id" in endpoint.path else None,
                    "owner": CALLER,
                }
                holder = Principal(client_id=CALLER, scopes=frozenset(endpoint.scopes))
                if not (await authorizer.decide(holder, endpoint.action, resource)).allowed:
                    found.append(f"{endpoint.action}: refused with its scopes {endpoint.scopes}")
                lacking = Principal(client_id=CALLER, scopes=every_scope - set(endpoint.scopes))
                if (await authorizer.decide(lacking, endpoint.action, resource)).allowed:
                    found.append(f"{endpoint.action}: allowed without {endpoint.scopes}")
        finally:
            await opa.close()
        return found

    return asyncio.run(ask())


def test_every_endpoint_is_allowed_with_its_scopes_and_denied_without_when_asking_opa(
    stack: Stack,
) -> None:
    endpoints = _declared()
    assert len(endpoints) >= 25
    assert _disagreements(stack.opa_url, endpoints) == []


def test_the_check_names_the_endpoint_when_its_scope_is_dropped_from_authz_rego(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(REPO_ROOT / "policies", policies)
    authz = policies / "authz.rego"
    dropped = '\t"ledger.transactions.void": "ledger:write",\n'
    original = authz.read_text()
    assert dropped in original
    authz.write_text(original.replace(dropped, ""))
    opa = Stack(
        root=tmp_path / "s", ports=Ports.free(), policies_dir=policies, watch_policies=False
    )
    try:
        opa.start_opa()
        found = _disagreements(opa.opa_url, _declared())
    finally:
        opa.stop_all()
    assert found == ["ledger.transactions.void: refused with its scopes ('ledger:write',)"]


def test_the_authorizer_asks_opa_for_the_verdict_alone_when_deciding(stack: Stack) -> None:
    """The API's per-request query names one rule, so OPA evaluates, returns and logs
    {allow, conceal, reasons}, never the whole package with its action table (which cost
    OPA twice the CPU per decision, issue 16)."""

    async def ask() -> tuple[dict[str, object], bool, str | None]:
        opa = Opa(stack.opa_url, timeout_ms=5000)
        try:
            authorizer = OpaAuthorizer(opa)
            principal = Principal(client_id=CALLER, scopes=frozenset({"ledger:write"}))
            resource = {"type": "ledger_transaction", "id": None, "owner": None}
            document = await opa.evaluate(
                authorizer.package_path,
                {"principal": {"client_id": CALLER, "scopes": ["ledger:write"]},
                 "action": "ledger.transactions.create", "resource": resource},
            )  # fmt: skip
            decision = await authorizer.decide(principal, "ledger.transactions.create", resource)
        finally:
            await opa.close()
        result = document.get("result")
        assert isinstance(result, dict)
        return result, decision.allowed, decision.decision_id

    result, allowed, decision_id = asyncio.run(ask())
    assert result == {"allow": True, "conceal": False, "reasons": []}
    assert allowed is True
    assert decision_id
