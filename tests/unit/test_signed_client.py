"""The client-side signer and token cache, without the API: signatures checked with the
library's own verifier, token retries counted by a tiny local HTTP server."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)

from app.platform import client_tokens
from app.platform.client_credentials import ClientCredentials, CredentialsFileError, private_pem
from app.platform.client_signing import sign_request
from app.platform.client_tokens import TokenCache, TokenRequestError
from app.platform.signed_client import SignedClient


class _Message:
    def __init__(self, request: httpx.Request) -> None:
        self.method = request.method
        self.url = str(request.url)
        self.headers = request.headers


def _verify(request: httpx.Request, private_key: Ed25519PrivateKey) -> list[str]:
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={"k1": private_key.public_key()}, private_keys={}
        ),
    )
    [result] = verifier.verify(_Message(request), body=request.read() or None)
    names = [str(component).strip('"') for component in result.covered_components]
    return [name for name in names if name != "@signature-params"]


def test_write_is_signed_over_method_uri_digest_and_key_when_it_has_a_body() -> None:
    private_key = Ed25519PrivateKey.generate()
    request = httpx.Request(
        "POST",
        "http://api.test/v1/ledger/accounts",
        json={"code": "a"},
        headers={"Idempotency-Key": "k-1"},
    )
    sign_request(request, key_id="k1", private_key=private_key)

    covered = _verify(request, private_key)
    assert set(covered) == {"@method", "@target-uri", "idempotency-key", "content-digest"}
    assert request.headers["signature-input"].startswith("sig1=")
    assert 'keyid="k1"' in request.headers["signature-input"]
    assert "nonce=" in request.headers["signature-input"]
    digest = base64.b64encode(hashlib.sha256(request.read()).digest()).decode()
    assert request.headers["content-digest"] == f"sha-256=:{digest}:"


def test_bodiless_post_has_no_content_digest_when_signed() -> None:
    private_key = Ed25519PrivateKey.generate()
    request = httpx.Request("POST", "http://api.test/v1/ledger/transactions/txn_1/void")
    sign_request(request, key_id="k1", private_key=private_key)
    assert "content-digest" not in request.headers
    assert set(_verify(request, private_key)) == {"@method", "@target-uri"}


def test_tampered_body_fails_verification_when_signed_before() -> None:
    private_key = Ed25519PrivateKey.generate()
    request = httpx.Request("POST", "http://api.test/v1/x", content=b'{"a":1}')
    sign_request(request, key_id="k1", private_key=private_key)
    tampered = httpx.Request("POST", "http://api.test/v1/x", content=b'{"a":2}')
    tampered.headers.update({k: request.headers[k] for k in ("signature", "signature-input")})
    tampered.headers["content-digest"] = request.headers["content-digest"]
    with pytest.raises(HTTPMessageSignaturesException):
        _verify(tampered, private_key)


class _TokenServer:
    """A local token endpoint that answers a scripted status and counts requests."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.hits: list[dict[str, list[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from urllib.parse import parse_qs

                length = int(self.headers.get("content-length", 0))
                owner.hits.append(parse_qs(self.rfile.read(length).decode()))
                body = (
                    json.dumps({"access_token": f"t{len(owner.hits)}", "expires_in": 300})
                    if owner.status == 200
                    else json.dumps({"error": "invalid_client"})
                ).encode()
                self.send_response(owner.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _TokenServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def credentials() -> ClientCredentials:
    return ClientCredentials("cli_1", "secret", "key_1", Ed25519PrivateKey.generate())


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    # stamina's testing mode: no waits, and the retry loops keep their own attempt counts.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def test_token_is_fetched_once_and_bound_to_the_key_when_reused(
    credentials: ClientCredentials,
) -> None:
    with _TokenServer(200) as server, httpx.Client(base_url=server.url, timeout=2) as http:
        tokens = TokenCache(http, credentials, scope="ledger:write")
        assert tokens.get() == "t1"
        assert tokens.get() == "t1"
        tokens.forget()
        assert tokens.get() == "t2"
    assert len(server.hits) == 2
    assert server.hits[0]["key_id"] == ["key_1"]
    assert server.hits[0]["scope"] == ["ledger:write"]


def test_token_refresh_gives_up_after_bounded_attempts_when_the_server_fails(
    credentials: ClientCredentials,
) -> None:
    with (
        _TokenServer(503) as server,
        httpx.Client(base_url=server.url, timeout=2) as http,
        pytest.raises(TokenRequestError, match="503"),
    ):
        TokenCache(http, credentials).get()
    assert len(server.hits) == client_tokens.TOKEN_MAX_ATTEMPTS


def test_token_refusal_is_raised_at_once_when_credentials_are_wrong(
    credentials: ClientCredentials,
) -> None:
    with (
        _TokenServer(401) as server,
        httpx.Client(base_url=server.url, timeout=2) as http,
        pytest.raises(TokenRequestError) as raised,
    ):
        TokenCache(http, credentials).get()
    assert raised.value.status_code == 401
    assert len(server.hits) == 1


def test_writes_get_an_idempotency_key_and_reads_none_when_none_is_given(
    credentials: ClientCredentials,
) -> None:
    with _TokenServer(200) as server, SignedClient(credentials, base_url=server.url) as client:
        write = client.build("POST", "/v1/ledger/accounts", json={"a": 1})
        given = client.build("POST", "/v1/ledger/accounts", json={"a": 1}, idempotency_key="k")
        read = client.build("GET", "/v1/ledger/accounts/acc_1")
    assert write.headers["idempotency-key"].startswith("mp-")
    assert given.headers["idempotency-key"] == "k"
    assert "idempotency-key" not in read.headers
    assert "signature" not in read.headers
    assert write.headers["authorization"] == "Bearer t1"


def test_credentials_file_loads_the_key_relative_to_itself_when_valid(tmp_path: Path) -> None:
    private_key = Ed25519PrivateKey.generate()
    (tmp_path / "k.pem").write_bytes(private_pem(private_key))
    path = tmp_path / "c.json"
    document = {"client_id": "cli_1", "client_secret": "s", "key_id": "k1", "key_path": "k.pem"}
    path.write_text(json.dumps(document))
    loaded = ClientCredentials.from_file(path)
    assert loaded.key_id == "k1"
    assert private_pem(loaded.private_key) == private_pem(private_key)
    path.write_text(json.dumps({**document, "client_secret": ""}))
    with pytest.raises(CredentialsFileError, match="client_secret"):
        ClientCredentials.from_file(path)
