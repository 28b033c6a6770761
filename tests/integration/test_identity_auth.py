"""Tokens, RFC 9421 signatures and anti-replay against the real PostgreSQL, OpenBao and OPA.

Every signed request here is produced by the independent `http-message-signatures` signer
(tests/support/api_client.py), never by our own verifier's code.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from tests.support.api_client import ApiClient, ClientFactory, new_private_key

Factory = ClientFactory


def _db_rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url) as connection:
        return connection.execute(sql, params).fetchall()


def _new_client_body(**extra: Any) -> dict[str, Any]:
    from tests.support.api_client import public_pem

    return {
        "name": "made-by-admin",
        "scopes": ["ledger:read"],
        "public_key_pem": public_pem(new_private_key()),
        **extra,
    }


@pytest.fixture(scope="module")
def admin(client_factory: Factory) -> ApiClient:
    return client_factory(scopes=["clients:admin"], name="admin")


def _code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["code"])


# ---- tokens ---------------------------------------------------------------------------------


def test_token_is_short_lived_eddsa_jwt_bound_to_the_clients_key_when_credentials_are_right(
    api: TestClient, admin: ApiClient
) -> None:
    response = admin.fetch_token()
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "clients:admin"
    header = jwt.get_unverified_header(body["access_token"])
    jwks = api.get("/.well-known/jwks.json").json()
    published = {key["kid"]: key for key in jwks["keys"]}
    assert header["alg"] == "EdDSA"
    assert header["kid"] in published
    claims = jwt.decode(
        body["access_token"],
        jwt.PyJWK(published[header["kid"]]).key,
        algorithms=["EdDSA"],
        audience="moneypath",
        issuer=str(api.base_url).rstrip("/"),
    )
    assert claims["sub"] == admin.client_id
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["jti"]
    assert claims["cnf"]["kid"] == admin.key_id
    assert claims["cnf"]["jwk"]["kty"] == "OKP"


def test_token_carries_the_narrower_scope_when_a_subset_is_asked(
    client_factory: Factory,
) -> None:
    client = client_factory(scopes=["ledger:read", "ledger:write"])
    response = client.fetch_token(scope="ledger:read")
    assert response.status_code == 200
    assert response.json()["scope"] == "ledger:read"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "payments:write"}, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "key_id": "key_nope"}, 400, "invalid_request"),
    ],
)
def test_token_endpoint_answers_rfc6749_errors_when_the_request_is_wrong(
    api: TestClient,
    admin: ApiClient,
    form: dict[str, str],
    status: int,
    error: str,
) -> None:
    data = {"client_id": admin.client_id, "client_secret": admin.client_secret, **form}
    response = api.post("/v1/oauth/token", data=data)
    assert response.status_code == status
    assert response.json()["error"] == error


def test_token_endpoint_refuses_json_bodies_with_invalid_request(
    api: TestClient, admin: ApiClient
) -> None:
    response = api.post(
        "/v1/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": admin.client_id,
            "client_secret": admin.client_secret,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_unknown_client_and_wrong_secret_are_indistinguishable(api: TestClient) -> None:
    response = api.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "cli_nope", "client_secret": "x"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


# ---- bearer authentication ------------------------------------------------------------------


def test_request_without_token_is_401_unauthorized(api: TestClient, admin: ApiClient) -> None:
    response = api.get(f"/v1/clients/{admin.client_id}")
    assert response.status_code == 401
    assert _code(response) == "unauthorized"


def test_request_with_tampered_token_is_401_unauthorized(api: TestClient, admin: ApiClient) -> None:
    token = admin.token()
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = api.get(
        f"/v1/clients/{admin.client_id}", headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
    assert _code(response) == "unauthorized"


def test_request_with_token_signed_by_unknown_key_is_401(api: TestClient, admin: ApiClient) -> None:
    rogue = new_private_key()
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": str(api.base_url).rstrip("/"),
            "sub": admin.client_id,
            "aud": "moneypath",
            "iat": now,
            "exp": now + 60,
            "jti": "x",
            "scope": "clients:admin",
            "cnf": {"kid": admin.key_id, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AA"}},
        },
        rogue,
        algorithm="EdDSA",
        headers={"kid": "jwt_rogue"},
    )
    response = api.get(
        f"/v1/clients/{admin.client_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert _code(response) == "unauthorized"


# ---- signed requests ------------------------------------------------------------------------


def test_request_signed_by_independent_signer_is_accepted(admin: ApiClient) -> None:
    response = admin.post("/v1/clients", json=_new_client_body(), idempotency_key="ok-1")
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"].startswith("cli_")
    assert created["client_secret"].startswith("mps_")
    assert created["key_id"].startswith("key_")
    assert created["owner"] == admin.client_id
    read = admin.get(f"/v1/clients/{created['id']}")
    assert read.status_code == 200
    assert "client_secret" not in read.json()
    assert read.json()["keys"][0]["key_id"] == created["key_id"]


def test_idempotent_replay_of_client_creation_never_shows_the_secret_again(
    admin: ApiClient,
) -> None:
    body = _new_client_body()
    first = admin.post("/v1/clients", json=body, idempotency_key="secret-once")
    again = admin.post("/v1/clients", json=body, idempotency_key="secret-once")
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["client_secret"]
    assert again.json()["client_secret"] is None


def test_target_uri_comes_from_public_base_url_not_host_header(admin: ApiClient) -> None:
    response = admin.post(
        "/v1/clients",
        json=_new_client_body(),
        idempotency_key="host-1",
        headers={"Host": "attacker.example"},
    )
    assert response.status_code == 201, response.text


def test_unsigned_mutating_request_is_401_signature_required(admin: ApiClient) -> None:
    response = admin.post("/v1/clients", json=_new_client_body(), idempotency_key="u", sign=False)
    assert response.status_code == 401
    assert _code(response) == "signature_required"


def test_replayed_request_is_401_replayed_request(admin: ApiClient, stack: Stack) -> None:
    request = admin.build("POST", "/v1/clients", json=_new_client_body(), idempotency_key="r-1")
    first = admin.send(request)
    assert first.status_code == 201
    replay = admin.send(request)
    assert replay.status_code == 401
    assert _code(replay) == "replayed_request"
    request_id = replay.headers["x-request-id"]
    rows = _db_rows(
        stack,
        "SELECT actor, event_type, outcome, code FROM platform.audit_log WHERE request_id = %s",
        request_id,
    )
    assert rows == [(admin.client_id, "clients.create", "failure", "replayed_request")]


def test_request_created_ten_minutes_ago_is_401_stale_request(admin: ApiClient) -> None:
    old = datetime.now(UTC) - timedelta(minutes=10)
    response = admin.post(
        "/v1/clients", json=_new_client_body(), idempotency_key="stale-1", created=old
    )
    assert response.status_code == 401
    assert _code(response) == "stale_request"


def test_request_created_too_far_in_future_is_401_stale_request(admin: ApiClient) -> None:
    ahead = datetime.now(UTC) + timedelta(seconds=90)
    response = admin.post(
        "/v1/clients", json=_new_client_body(), idempotency_key="stale-2", created=ahead
    )
    assert response.status_code == 401
    assert _code(response) == "stale_request"


def test_body_changed_after_signing_is_401_digest_mismatch(admin: ApiClient) -> None:
    signed = admin.build("POST", "/v1/clients", json=_new_client_body(), idempotency_key="tamper-1")
    tampered_body = signed.content.replace(b'"ledger:read"', b'"clients:admin"')
    assert tampered_body != signed.content
    headers = {k: v for k, v in signed.headers.items() if k.lower() != "content-length"}
    tampered = httpx.Request("POST", signed.url, headers=headers, content=tampered_body)
    response = admin.send(tampered)
    assert response.status_code == 401
    assert _code(response) == "digest_mismatch"


def test_request_signed_with_another_clients_key_is_401_key_not_bound(
    admin: ApiClient, client_factory: Factory
) -> None:
    other = client_factory(scopes=["clients:admin"])
    response = admin.post(
        "/v1/clients",
        json=_new_client_body(),
        idempotency_key="foreign-1",
        signing_key=(other.key_id, other.private_key),
    )
    assert response.status_code == 401
    assert _code(response) == "key_not_bound"


def test_request_signed_by_wrong_private_key_under_own_keyid_is_401_invalid_signature(
    admin: ApiClient,
) -> None:
    response = admin.post(
        "/v1/clients",
        json=_new_client_body(),
        idempotency_key="forged-1",
        signing_key=(admin.key_id, new_private_key()),
    )
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"


@pytest.mark.parametrize("nonce", ["short", "x" * 129, "has spaces in it ok?"])
def test_bad_nonce_is_401_invalid_signature(admin: ApiClient, nonce: str) -> None:
    response = admin.post(
        "/v1/clients", json=_new_client_body(), idempotency_key="nonce-1", nonce=nonce
    )
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"


def test_signature_not_covering_idempotency_key_is_401_invalid_signature(
    admin: ApiClient,
) -> None:
    signed = admin.build("POST", "/v1/clients", json=_new_client_body())
    signed.headers["Idempotency-Key"] = "added-after-signing"
    response = admin.send(signed)
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"


def test_missing_scope_is_403_forbidden(client_factory: Factory) -> None:
    reader = client_factory(scopes=["ledger:read"])
    response = reader.post("/v1/clients", json=_new_client_body(), idempotency_key="scope-1")
    assert response.status_code == 403
    assert _code(response) == "forbidden"


def test_disabled_client_is_refused_at_once(client_factory: Factory, stack: Stack) -> None:
    client = client_factory(scopes=["clients:admin"])
    assert client.get(f"/v1/clients/{client.client_id}").status_code == 200
    _db_rows(
        stack,
        "UPDATE identity.clients SET disabled = true WHERE id = %s RETURNING id",
        client.client_id,
    )
    response = client.get(f"/v1/clients/{client.client_id}")
    assert response.status_code == 401
    assert _code(response) == "unauthorized"
    client.forget_token()
    assert client.fetch_token().json()["error"] == "invalid_client"


def test_nonces_are_kept_600_s_and_expired_ones_are_cleaned(admin: ApiClient, stack: Stack) -> None:
    nonce = secrets.token_urlsafe(24)
    response = admin.post(
        "/v1/clients", json=_new_client_body(), idempotency_key="keep-1", nonce=nonce
    )
    assert response.status_code == 201
    rows = _db_rows(
        stack,
        "SELECT extract(epoch FROM expires_at - now()) FROM platform.seen_nonces "
        "WHERE key_id = %s AND nonce = %s",
        admin.key_id,
        nonce,
    )
    assert len(rows) == 1
    assert 590 <= float(rows[0][0]) <= 600


def test_security_rejections_are_counted_by_code(api: TestClient, admin: ApiClient) -> None:
    def count() -> float:
        text = api.get("/metrics").text
        for line in text.splitlines():
            if line.startswith('moneypath_security_rejections_total{code="stale_request"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    old = datetime.now(UTC) - timedelta(minutes=10)
    admin.post("/v1/clients", json=_new_client_body(), idempotency_key="m-1", created=old)
    assert count() == before + 1


def test_signature_with_expires_in_the_past_is_401_stale_request(admin: ApiClient) -> None:
    response = admin.post(
        "/v1/clients",
        json=_new_client_body(),
        idempotency_key="exp-1",
        expires=datetime.now(UTC) - timedelta(seconds=5),
    )
    assert response.status_code == 401
    assert _code(response) == "stale_request"


def test_expired_nonces_are_deleted_and_live_ones_kept(stack: Stack) -> None:
    import asyncio

    from app.platform.db import create_engine, session_factory
    from app.platform.request_auth import delete_expired_nonces

    _db_rows(
        stack,
        "INSERT INTO platform.seen_nonces VALUES "
        "('key_gc', 'old-nonce-aaaaaaaaaa', now() - interval '1 second'), "
        "('key_gc', 'new-nonce-aaaaaaaaaa', now() + interval '600 seconds') RETURNING 1",
    )

    async def clean() -> int:
        engine = create_engine(stack.database_url or "", pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await delete_expired_nonces(session)
        finally:
            await engine.dispose()

    assert asyncio.run(clean()) >= 1
    left = _db_rows(stack, "SELECT nonce FROM platform.seen_nonces WHERE key_id = 'key_gc'")
    assert left == [("new-nonce-aaaaaaaaaa",)]


def test_token_endpoint_accepts_http_basic_client_authentication(
    api: TestClient, admin: ApiClient
) -> None:
    response = api.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(admin.client_id, admin.client_secret),
    )
    assert response.status_code == 200
    wrong = api.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(admin.client_id, admin.client_secret + "x"),
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


def test_cli_bootstraps_an_admin_whose_key_signs_accepted_requests(
    stack: Stack, api: TestClient, tmp_path: Any
) -> None:
    import json
    import subprocess
    import sys

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key_file = tmp_path / "admin.pem"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.entrypoints.cli",
            "clients",
            "create",
            "--name",
            "first-admin",
            "--scopes",
            "clients:admin",
            "kyc:write",
            "--private-key-out",
            str(key_file),
        ],
        env=stack.app_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["client_secret"].startswith("mps_")
    assert "PRIVATE KEY" not in result.stdout
    assert key_file.stat().st_mode & 0o077 == 0
    private_key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    assert isinstance(private_key, Ed25519PrivateKey)
    admin = ApiClient(
        api,
        client_id=printed["client_id"],
        client_secret=printed["client_secret"],
        key_id=printed["key_id"],
        private_key=private_key,
    )
    assert admin.fetch_token().json()["scope"] == "clients:admin kyc:write"
    response = admin.post("/v1/clients", json=_new_client_body(), idempotency_key="cli-1")
    assert response.status_code == 201, response.text
