"""The identity flows against the API as a real uvicorn process, then a scan of every log
line it wrote (and the audit table) for the secrets and PII the test created."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from app.entrypoints.devstack import Stack
from app.platform.request_auth import InvalidTokenError, TokenVerifier
from tests.support.api_client import ApiClient, ClientFactory, new_private_key, public_pem


def _key() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def live_http(live_stack: Stack) -> Any:
    with httpx.Client(base_url=live_stack.api_url, timeout=10) as http:
        yield http


def test_live_api_accepts_independently_signed_request_and_refuses_its_replay(
    live_http: httpx.Client, client_factory: ClientFactory
) -> None:
    client = client_factory(scopes=["clients:admin"], http=live_http)
    body = {
        "name": "live",
        "scopes": ["ledger:read"],
        "public_key_pem": public_pem(new_private_key()),
    }
    request = client.build("POST", "/v1/clients", json=body, idempotency_key="live-1")
    response = client.send(request)
    assert response.status_code == 201, response.text
    replay = client.send(request)
    assert replay.status_code == 401
    assert replay.json()["code"] == "replayed_request"


def test_remote_jwks_verifier_checks_tokens_of_the_live_issuer(
    live_stack: Stack, live_http: httpx.Client, client_factory: ClientFactory
) -> None:
    """The evidence service's way: issuer + JWKS URL from configuration, no shared state."""
    client = client_factory(scopes=["evidence:write"], http=live_http)
    verifier = TokenVerifier(
        issuer=live_stack.api_url, jwks_url=f"{live_stack.api_url}/.well-known/jwks.json"
    )
    token = client.token()
    verified = asyncio.run(verifier.verify(token))
    assert verified.client_id == client.client_id
    assert verified.key_id == client.key_id
    assert verified.scopes == frozenset({"evidence:write"})
    wrong_issuer = TokenVerifier(
        issuer="https://elsewhere.example", jwks_url=f"{live_stack.api_url}/.well-known/jwks.json"
    )
    with pytest.raises(InvalidTokenError):
        asyncio.run(wrong_issuer.verify(token))


def test_no_secret_or_pii_reaches_any_log_line_or_the_audit_log(
    live_stack: Stack, live_http: httpx.Client, client_factory: ClientFactory
) -> None:
    admin = client_factory(scopes=["clients:admin", "kyc:write"], http=live_http)
    private_key = new_private_key()
    created = admin.post(
        "/v1/clients",
        json={"name": "scan", "scopes": ["kyc:write"], "public_key_pem": public_pem(private_key)},
        idempotency_key=_key(),
    )
    assert created.status_code == 201
    secret = created.json()["client_secret"]
    made = ApiClient(
        live_http,
        client_id=created.json()["id"],
        client_secret=secret,
        key_id=created.json()["key_id"],
        private_key=private_key,
    )
    pii = {
        "name": f"Zelda Scanfor-{uuid.uuid4().hex[:8]}",
        "email": f"scan-{uuid.uuid4().hex[:8]}@example.org",
        "country": "DE",
        "date_of_birth": "1901-02-03",
    }
    customer = made.post("/v1/customers", json=pii, idempotency_key=_key())
    assert customer.status_code == 201, customer.text
    read = made.get(f"/v1/customers/{customer.json()['id']}")
    assert read.json()["email"] == pii["email"]
    wrong = live_http.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": made.client_id,
            "client_secret": secret + "x",
        },
    )
    assert wrong.status_code == 401
    replayed_request = made.build("POST", "/v1/customers", json=pii, idempotency_key=_key())
    assert made.send(replayed_request).status_code == 201
    assert made.send(replayed_request).status_code == 401
    # Something is logged at all, or the scan below would prove nothing.
    api_log = live_stack.log_path("api").read_text(errors="replace")
    assert "request_rejected" in api_log
    assert '"decision_id": "' in api_log
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    private_body = "".join(private_pem.strip().splitlines()[1:-1])
    secrets_made = {
        "client secret": secret,
        "admin secret": admin.client_secret,
        "private key": private_body,
        "access token": made.token(),
        "pii name": pii["name"],
        "pii email": pii["email"],
        "pii date of birth": pii["date_of_birth"],
    }
    logs = {
        path.name: path.read_text(errors="replace") for path in live_stack.log_dir.glob("*.log")
    }
    assert "api.log" in logs
    for what, value in secrets_made.items():
        for name, text in logs.items():
            assert value not in text, f"{what} found in {name}"
    assert live_stack.database_url is not None
    with psycopg.connect(live_stack.database_url) as connection:
        audit_text = " ".join(
            str(row) for row in connection.execute("SELECT * FROM platform.audit_log").fetchall()
        )
    for what, value in secrets_made.items():
        assert value not in audit_text, f"{what} found in the audit log"
