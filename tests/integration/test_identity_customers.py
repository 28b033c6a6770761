"""Customers, KYC, PII encryption and its key rotation, OPA ownership and fail-closed,
client key rotation, JWT signing key rotation, and AppRole login: all against the real
PostgreSQL, OpenBao and OPA."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import psycopg
import pytest
from starlette.testclient import TestClient

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.openbao import DEV_ROOT_TOKEN
from app.identity import api as identity_api
from app.platform.db import create_engine, session_factory
from app.platform.settings import Settings, VaultLogin
from app.platform.vault import Vault, VaultUnavailableError
from tests.support.api_client import ApiClient, ClientFactory, new_private_key, public_pem

PII = {"name": "Ada Lovelace", "email": "ada@example.org", "country": "GB"}


def _rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url) as connection:
        return connection.execute(sql, params).fetchall()


def _key() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def kyc(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["kyc:write"], name="kyc-owner")


def _create_customer(client: ApiClient, **extra: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/customers",
        json={**PII, "date_of_birth": "1815-12-10", **extra},
        idempotency_key=_key(),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_customer_pii_is_stored_only_as_vault_ciphertext(kyc: ApiClient, stack: Stack) -> None:
    created = _create_customer(kyc)
    assert created["kyc_status"] == "pending"
    assert "Ada" not in json.dumps(created)
    ((name, email, dob, country),) = _rows(
        stack,
        "SELECT name_ciphertext, email_ciphertext, date_of_birth_ciphertext, country "
        "FROM identity.customers WHERE id = %s",
        created["id"],
    )
    for ciphertext in (name, email, dob):
        assert ciphertext.startswith("vault:v")
    assert "Ada" not in name
    assert "example.org" not in email
    assert "1815" not in dob
    assert country == "GB"
    read = kyc.get(f"/v1/customers/{created['id']}")
    assert read.status_code == 200
    assert read.json()["name"] == "Ada Lovelace"
    assert read.json()["email"] == "ada@example.org"
    assert read.json()["date_of_birth"] == "1815-12-10"


def test_pii_never_lands_in_the_idempotency_store(kyc: ApiClient, stack: Stack) -> None:
    _create_customer(kyc, name="Grace Hopper")
    leaked = _rows(
        stack,
        "SELECT count(*) FROM platform.idempotency_keys WHERE response_body::text LIKE %s",
        "%Grace%",
    )
    assert leaked == [(0,)]


def test_other_clients_customer_answers_404_like_a_missing_one_when_probed(
    kyc: ApiClient, client_factory: ClientFactory
) -> None:
    created = _create_customer(kyc)
    missing_id = "cus_" + "0" * 24
    for scopes in (["kyc:write"], ["ledger:read"]):
        stranger = client_factory(scopes=scopes)
        response = stranger.get(f"/v1/customers/{created['id']}")
        missing = stranger.get(f"/v1/customers/{missing_id}")
        assert response.status_code == missing.status_code == 404
        assert response.json()["code"] == missing.json()["code"] == "not_found"
        assert response.json()["detail"] == missing.json()["detail"]
        decision = stranger.post(
            f"/v1/customers/{created['id']}/kyc",
            json={"status": "verified"},
            idempotency_key=_key(),
        )
        assert decision.status_code == 404
        assert decision.json()["code"] == "not_found"
    # The owner still sees it, and the stranger's attempt changed nothing.
    own = kyc.get(f"/v1/customers/{created['id']}")
    assert own.status_code == 200
    assert own.json()["kyc_status"] == "pending"


def test_kyc_transition_is_applied_and_audited_with_its_decision_id(
    kyc: ApiClient, stack: Stack
) -> None:
    created = _create_customer(kyc)
    response = kyc.post(
        f"/v1/customers/{created['id']}/kyc",
        json={"status": "verified", "reason": "documents checked"},
        idempotency_key=_key(),
    )
    assert response.status_code == 200, response.text
    assert response.json()["kyc_status"] == "verified"
    rows = _rows(
        stack,
        "SELECT actor, outcome, decision_id, details, origin_ip, request_id "
        "FROM platform.audit_log WHERE event_type = 'customers.kyc_status_changed' "
        "AND resource_id = %s",
        created["id"],
    )
    assert len(rows) == 1
    actor, outcome, decision_id, details, origin_ip, request_id = rows[0]
    assert (actor, outcome) == (kyc.client_id, "success")
    assert decision_id
    assert details == {"from": "pending", "to": "verified"}
    assert origin_ip
    assert request_id == response.headers["x-request-id"]


def test_repeating_a_kyc_decision_is_409_invalid_state(kyc: ApiClient) -> None:
    created = _create_customer(kyc)
    path = f"/v1/customers/{created['id']}/kyc"
    assert kyc.post(path, json={"status": "rejected"}, idempotency_key=_key()).status_code == 200
    again = kyc.post(path, json={"status": "rejected"}, idempotency_key=_key())
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_state"


def test_unknown_customer_is_404(kyc: ApiClient) -> None:
    response = kyc.get("/v1/customers/cus_nope")
    assert response.status_code == 404


def test_pii_key_rotation_rewraps_and_refuses_old_ciphertext(
    kyc: ApiClient, stack: Stack, settings: Settings
) -> None:
    created = _create_customer(kyc)
    ((old_name,),) = _rows(
        stack, "SELECT name_ciphertext FROM identity.customers WHERE id = %s", created["id"]
    )
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    assert stack.database_url is not None

    async def rotate() -> identity_api.RotationReport:
        engine = create_engine(stack.database_url or "", pool_size=2)
        try:
            return await identity_api.rotate_pii_key(vault, session_factory(engine))
        finally:
            await engine.dispose()

    report = asyncio.run(rotate())
    assert report.rewrapped >= 3
    assert report.min_decryption_version == report.key_version >= 2
    prefix = f"vault:v{report.key_version}:"
    stale = _rows(
        stack,
        "SELECT count(*) FROM identity.customers WHERE name_ciphertext NOT LIKE %s "
        "OR email_ciphertext NOT LIKE %s",
        prefix + "%",
        prefix + "%",
    )
    assert stale == [(0,)]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        vault.decrypt("moneypath-pii", old_name)
    read = kyc.get(f"/v1/customers/{created['id']}")
    assert read.status_code == 200
    assert read.json()["name"] == "Ada Lovelace"


# ---- client keys --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["clients:admin"], name="key-admin")


def test_client_key_rotation_retires_the_old_key_and_binds_the_new(
    admin: ApiClient, client_factory: ClientFactory, api: TestClient
) -> None:
    client = client_factory(scopes=["kyc:write"])
    assert client.post("/v1/customers", json=PII, idempotency_key=_key()).status_code == 201
    new_key = new_private_key()
    response = admin.post(
        f"/v1/clients/{client.client_id}/keys",
        json={
            "public_key_pem": public_pem(new_key),
            "retire_previous_at": datetime.now(UTC).isoformat(),
        },
        idempotency_key=_key(),
    )
    assert response.status_code == 201, response.text
    new_key_id = response.json()["key_id"]
    retired = next(k for k in response.json()["keys"] if k["key_id"] == client.key_id)
    assert retired["not_after"] is not None
    # The token that binds the retired key is refused from now on.
    old = client.post("/v1/customers", json=PII, idempotency_key=_key())
    assert old.status_code == 401
    rotated = ApiClient(
        api,
        client_id=client.client_id,
        client_secret=client.client_secret,
        key_id=new_key_id,
        private_key=new_key,
    )
    assert rotated.post("/v1/customers", json=PII, idempotency_key=_key()).status_code == 201
    assert rotated.fetch_token(key_id=client.key_id).json()["error"] == "invalid_request"


def test_client_disabled_through_the_api_gets_401_at_once(
    admin: ApiClient, client_factory: ClientFactory
) -> None:
    client = client_factory(scopes=["kyc:write"])
    assert client.post("/v1/customers", json=PII, idempotency_key=_key()).status_code == 201
    disabled = admin.post(f"/v1/clients/{client.client_id}/disable", idempotency_key=_key())
    assert disabled.status_code == 200
    assert disabled.json()["disabled"] is True
    refused = client.post("/v1/customers", json=PII, idempotency_key=_key())
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"


def test_client_creation_refuses_unknown_scopes_and_private_jwks(admin: ApiClient) -> None:
    unknown = admin.post(
        "/v1/clients",
        json={"name": "x", "scopes": ["god:mode"], "public_key_pem": public_pem(new_private_key())},
        idempotency_key=_key(),
    )
    assert unknown.status_code == 422
    assert unknown.json()["code"] == "unknown_scope"
    private = admin.post(
        "/v1/clients",
        json={
            "name": "x",
            "scopes": ["ledger:read"],
            "public_jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA"},
        },
        idempotency_key=_key(),
    )
    assert private.status_code == 422


# ---- JWT signing key rotation -------------------------------------------------------------


def test_token_signed_with_previous_kid_stays_valid_after_rotation(
    api: TestClient, admin: ApiClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization

    from app.identity import tokens

    old_token = admin.token()
    issuer = api.app.state.services.identity.issuer  # type: ignore[attr-defined]
    old_kid = issuer.current_kid
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    # As if another replica (or the CLI) rotated: this process has not reloaded yet.
    new_kid = identity_api.rotate_signing_key(vault)
    stored = vault.read_secret(tokens.SIGNING_KEY_SECRET)
    assert stored is not None
    new_private = serialization.load_pem_private_key(
        stored["keys"][0]["private_pem"].encode(), None
    )
    claims = jwt.decode(old_token, options={"verify_signature": False})
    now = int(time.time())
    replica_token = jwt.encode(
        {**claims, "iat": now, "nbf": now, "exp": now + 60, "jti": "tok_replica"},
        new_private,  # type: ignore[arg-type]
        algorithm="EdDSA",
        headers={"kid": new_kid, "typ": "at+jwt"},
    )
    monkeypatch.setattr(tokens, "UNKNOWN_KID_RELOAD_S", 0)
    by_replica = api.get(
        f"/v1/clients/{admin.client_id}", headers={"Authorization": f"Bearer {replica_token}"}
    )
    assert by_replica.status_code == 200, by_replica.text
    kids = [key["kid"] for key in api.get("/.well-known/jwks.json").json()["keys"]]
    assert kids == [new_kid, old_kid]
    still = api.get(
        f"/v1/clients/{admin.client_id}", headers={"Authorization": f"Bearer {old_token}"}
    )
    assert still.status_code == 200
    admin.forget_token()
    assert jwt.get_unverified_header(admin.token())["kid"] == new_kid
    assert admin.get(f"/v1/clients/{admin.client_id}").status_code == 200


# ---- OPA fails closed ---------------------------------------------------------------------


def test_request_is_503_when_opa_is_stopped_and_works_again_after(
    stack: Stack, kyc: ApiClient
) -> None:
    created = _create_customer(kyc)
    request_id = f"opa-down-{uuid.uuid4().hex}"
    stack.stop("opa")
    try:
        response = kyc.get(f"/v1/customers/{created['id']}", headers={"X-Request-Id": request_id})
        assert response.status_code == 503
        assert response.json()["code"] == "authorization_unavailable"
    finally:
        stack.start_opa()
    assert stack.database_url is not None
    with psycopg.connect(stack.database_url, autocommit=True) as connection:
        audited = connection.execute(
            "SELECT actor, outcome, code FROM platform.audit_log WHERE request_id = %s",
            (request_id,),
        ).fetchall()
    assert audited == [(kyc.client_id, "failure", "authorization_unavailable")]
    assert kyc.get(f"/v1/customers/{created['id']}").status_code == 200


# ---- secrets from Vault -------------------------------------------------------------------


def test_approle_login_reads_only_what_its_policy_allows(stack: Stack) -> None:
    root = hvac.Client(url=stack.vault_addr, token=DEV_ROOT_TOKEN, timeout=5)
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(
        name="moneypath-api-test",
        policy='path "kv/data/moneypath/*" { capabilities = ["read"] }',
    )
    root.auth.approle.create_or_update_approle(
        role_name="moneypath-api-test", token_policies=["moneypath-api-test"], token_ttl="5m"
    )
    role_id = root.auth.approle.read_role_id("moneypath-api-test")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("moneypath-api-test")["data"]["secret_id"]
    vault = Vault.login(stack.vault_addr, VaultLogin(role_id=role_id, secret_id=secret_id))
    assert vault.read_secret("moneypath/database") is not None
    with pytest.raises(hvac.exceptions.Forbidden):
        vault.write_secret("moneypath/database", {"url": "postgresql://evil"})
    with pytest.raises(VaultUnavailableError):
        Vault.login(stack.vault_addr, VaultLogin(role_id=role_id, secret_id="wrong"))
    production = Settings.from_env(
        {
            "MONEYPATH_ENV": "production",
            "VAULT_ADDR": stack.vault_addr,
            # The test's OpenBao is plain http on loopback, which production must allow.
            "ALLOW_PLAIN_HTTP_LOOPBACK": "true",
            "VAULT_ROLE_ID": role_id,
            "VAULT_SECRET_ID": secret_id,
        }
    )
    assert production.vault_login.token is None
    assert Vault.login(production.vault_addr, production.vault_login).health()


def test_expired_key_window_is_enforced(admin: ApiClient, client_factory: ClientFactory) -> None:
    client = client_factory(scopes=["kyc:write"])
    later_key = new_private_key()
    starts = datetime.now(UTC) + timedelta(hours=1)
    response = admin.post(
        f"/v1/clients/{client.client_id}/keys",
        json={"public_key_pem": public_pem(later_key), "not_before": starts.isoformat()},
        idempotency_key=_key(),
    )
    assert response.status_code == 201
    future_key = response.json()["key_id"]
    # A key that is not valid yet cannot be bound to a token.
    assert client.fetch_token(key_id=future_key).json()["error"] == "invalid_request"
    assert client.fetch_token().status_code == 200


def test_ledger_read_scope_cannot_post_a_transaction(client_factory: ClientFactory) -> None:
    reader = client_factory(scopes=["ledger:read"])
    response = reader.post(
        "/v1/ledger/transactions",
        json={
            "status": "posted",
            "postings": [
                {"account_id": "acc_a", "direction": "debit", "amount_minor": 1, "currency": "EUR"},
                {
                    "account_id": "acc_b",
                    "direction": "credit",
                    "amount_minor": 1,
                    "currency": "EUR",
                },
            ],
        },
        idempotency_key=_key(),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
