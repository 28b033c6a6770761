"""Only the worker's anchor client may write `ledger.checkpoint` evidence, and it is trusted
for that type alone (issue 10: least privilege for the ledger's anchors).

Over HTTP against the uvicorn evidence service and the real OPA, with the anchor client
the bootstrap registered (credentials in Vault) and the trust the dev stack gave it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from app.entrypoints import anchors, worker
from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.platform.client_credentials import ClientCredentials
from app.platform.db import create_engine, session_factory
from app.platform.settings import VaultLogin
from app.platform.vault import Vault
from tests.support.api_client import ApiClient, ClientFactory


@pytest.fixture(scope="module")
def anchor(live_stack: Stack) -> ClientCredentials:
    vault = Vault.login(live_stack.vault_addr, VaultLogin(token=DEV_ROOT_TOKEN))
    credentials = anchors.credentials_from_vault(vault)
    assert credentials is not None
    return credentials


@pytest.fixture(scope="module")
def evidence_http(live_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_stack.evidence_url, timeout=10) as client:
        yield client


def _evidence_client(
    live_stack: Stack, client_factory: ClientFactory, evidence_http: httpx.Client, scopes: list[str]
) -> ApiClient:
    with httpx.Client(base_url=live_stack.api_url, timeout=10) as api_http:
        client = client_factory(scopes=scopes, http=api_http)
        client.token()
    client.http = evidence_http
    return client


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _checkpoint_body(seq: int, ledger_hash: str) -> dict[str, object]:
    return {
        "type": anchors.CHECKPOINT_TYPE,
        "control_refs": list(anchors.CHECKPOINT_CONTROLS),
        "result": "info",
        "subject": {},
        "actor": anchors.CHECKPOINT_ACTOR,
        "started_at": _now(),
        "finished_at": _now(),
        "details": {"ledger_seq": seq, "ledger_hash": ledger_hash},
    }


async def _anchor_live_head(live_stack: Stack, credentials: ClientCredentials) -> str | None:
    assert live_stack.database_url is not None
    engine = create_engine(live_stack.database_url, pool_size=1)
    client = anchors.evidence_client(
        credentials, evidence_url=live_stack.evidence_url, issuer_url=live_stack.api_url
    )
    try:
        return await worker.anchor_chain_head(session_factory(engine), client)
    finally:
        await client.aclose()
        await engine.dispose()


def test_anchor_client_writes_ledger_checkpoint_when_trusted_for_it(
    live_stack: Stack, anchor: ClientCredentials
) -> None:
    record_id = asyncio.run(_anchor_live_head(live_stack, anchor))
    assert record_id is not None
    assert record_id.startswith("evd_")


def test_anchoring_an_unchanged_head_returns_its_first_record_when_the_ledger_is_idle(
    live_stack: Stack, anchor: ClientCredentials
) -> None:
    # Same head, later timestamps: the evidence service answers 422 idempotency_key_reused,
    # which is not a failure but the head's existing anchor (before: an error every cadence).
    first = asyncio.run(_anchor_live_head(live_stack, anchor))
    again = asyncio.run(_anchor_live_head(live_stack, anchor))
    assert first is not None
    assert again == first


def test_other_client_cannot_write_ledger_checkpoint_when_it_holds_evidence_write(
    live_stack: Stack,
    client_factory: ClientFactory,
    evidence_http: httpx.Client,
) -> None:
    rogue = _evidence_client(live_stack, client_factory, evidence_http, ["evidence:write"])
    auditor = _evidence_client(live_stack, client_factory, evidence_http, ["evidence:read"])
    forged_hash = secrets.token_hex(32)
    response = rogue.post(
        "/v1/evidence",
        json=_checkpoint_body(1, forged_hash),
        idempotency_key=secrets.token_hex(8),
    )
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "forbidden"
    listed = auditor.get(
        "/v1/evidence", params={"type": anchors.CHECKPOINT_TYPE, "limit": 200}
    ).json()
    assert all(item["details"]["ledger_hash"] != forged_hash for item in listed["data"])
    assert all(item["submitted_by"]["client_id"] != rogue.client_id for item in listed["data"])
    # Other types stay open to any evidence writer (whose records count only if trusted).
    other = rogue.post(
        "/v1/evidence",
        json={**_checkpoint_body(1, forged_hash), "type": "ci.gate"},
        idempotency_key=secrets.token_hex(8),
    )
    assert other.status_code == 201, other.text


def test_anchor_client_is_trusted_for_ledger_checkpoint_only_when_policy_is_asked(
    live_stack: Stack, anchor: ClientCredentials
) -> None:
    kinds = ["ledger.checkpoint", "ci.run", "ledger.checkpoint.extra", "ledger.verify"]
    response = httpx.post(
        f"{live_stack.opa_url}/v1/data/moneypath/evidence/trust/verdicts",
        json={
            "input": {"pairs": [{"type": kind, "client_id": anchor.client_id} for kind in kinds]}
        },
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["result"] == [True, False, False, False]


def test_anchor_client_stays_trusted_when_opa_is_restarted(
    live_stack: Stack, anchor: ClientCredentials
) -> None:
    # OPA keeps data-API registrations in memory; the dev stack makes the anchor's again
    # when it starts OPA (the opa-down drill restarts it under a running worker).
    live_stack.stop("opa")
    live_stack.start_opa()
    registered = httpx.get(
        f"{live_stack.opa_url}/v1/data/trust/registered_evidence_submitters/{anchor.client_id}",
        timeout=5,
    )
    assert registered.json()["result"] == [anchors.CHECKPOINT_TYPE]
    record_id = asyncio.run(_anchor_live_head(live_stack, anchor))
    assert record_id is not None


def test_other_client_gets_403_before_422_when_its_checkpoint_body_is_also_invalid(
    live_stack: Stack,
    client_factory: ClientFactory,
    evidence_http: httpx.Client,
) -> None:
    # API.md's order of checks: OPA (403) comes before validation (422). The type the body
    # names is refused by the trust policy even when the rest of the body would fail the
    # schema; a writer allowed the type gets the schema's 422 for the same body.
    rogue = _evidence_client(live_stack, client_factory, evidence_http, ["evidence:write"])
    invalid = {**_checkpoint_body(1, secrets.token_hex(32)), "unexpected": True}
    del invalid["started_at"]
    refused = rogue.post("/v1/evidence", json=invalid, idempotency_key=secrets.token_hex(8))
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden"
    schema_error = rogue.post(
        "/v1/evidence",
        json={**invalid, "type": "ci.gate"},
        idempotency_key=secrets.token_hex(8),
    )
    assert schema_error.status_code == 422, schema_error.text
    assert schema_error.json()["code"] == "validation_error"
