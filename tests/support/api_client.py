"""A real API client for tests: client credentials, EdDSA token, RFC 9421 signed requests.

Signing uses the independent `http-message-signatures` library (HTTPMessageSigner) with
RFC 9530 Content-Digest and a fresh nonce per request, exactly as an outside integrator
would, so a test that passes through this client proves interoperability.

It works over any `httpx.Client`: the in-process Starlette `TestClient` (the `api`
fixture) or a plain `httpx.Client(base_url=live_stack.api_url)`. The base URL must be
the API's configured public base URL, because `@target-uri` is signed from it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from app.identity import api as identity_api
from app.platform.db import create_engine, session_factory

TOKEN_REFRESH_MARGIN_S = 30
SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class _SignableRequest:
    """The message shape HTTPMessageSigner reads and writes: method, url, headers."""

    method: str
    url: str
    headers: httpx.Headers


def sign_request(
    request: httpx.Request,
    *,
    key_id: str,
    private_key: Ed25519PrivateKey,
    body: bytes,
    created: datetime | None = None,
    nonce: str | None = None,
    expires: datetime | None = None,
) -> None:
    """Sign `request` in place (label sig1, ed25519, Content-Digest when there is a body)."""
    covered = ["@method", "@target-uri"]
    if "idempotency-key" in request.headers:
        covered.append("idempotency-key")
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    message = _SignableRequest(request.method, str(request.url), request.headers)
    signer.sign(
        message,
        key_id=key_id,
        created=created,
        expires=expires,
        nonce=nonce or secrets.token_urlsafe(24),
        label="sig1",
        covered_component_ids=covered,
        body=body if body else None,
    )


class ApiClient:
    """One API client with its own Ed25519 key. Mutating requests are signed."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        client_id: str,
        client_secret: str,
        key_id: str,
        private_key: Ed25519PrivateKey,
        scopes: Iterable[str] = (),
    ) -> None:
        self.http = http
        self.client_id = client_id
        self.client_secret = client_secret
        self.key_id = key_id
        self.private_key = private_key
        self.scopes = tuple(scopes)
        self._token: str | None = None
        self._token_expires_at = 0.0

    # ---- tokens -----------------------------------------------------------------------
    def fetch_token(self, scope: str | None = None, key_id: str | None = None) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        if scope is not None:
            form["scope"] = scope
        if key_id is not None:
            form["key_id"] = key_id
        return self.http.post("/v1/oauth/token", data=form)

    def token(self) -> str:
        if self._token is None or time.monotonic() > self._token_expires_at:
            response = self.fetch_token()
            if response.status_code != 200:
                raise RuntimeError(f"token request failed: {response.status_code} {response.text}")
            body = response.json()
            self._token = str(body["access_token"])
            self._token_expires_at = (
                time.monotonic() + int(body["expires_in"]) - TOKEN_REFRESH_MARGIN_S
            )
        return self._token

    def forget_token(self) -> None:
        self._token = None

    # ---- requests ---------------------------------------------------------------------
    def build(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        sign: bool | None = None,
        created: datetime | None = None,
        nonce: str | None = None,
        expires: datetime | None = None,
        signing_key: tuple[str, Ed25519PrivateKey] | None = None,
    ) -> httpx.Request:
        """Build (and, for mutating methods, sign) a request without sending it."""
        all_headers = {"Authorization": f"Bearer {self.token()}"}
        if idempotency_key is not None:
            all_headers["Idempotency-Key"] = idempotency_key
        all_headers.update(headers or {})
        request = self.http.build_request(
            method, path, json=json, content=content, headers=all_headers, params=params
        )
        if sign if sign is not None else method.upper() in SIGNED_METHODS:
            key_id, private_key = signing_key or (self.key_id, self.private_key)
            sign_request(
                request,
                key_id=key_id,
                private_key=private_key,
                body=request.read(),
                created=created,
                nonce=nonce,
                expires=expires,
            )
        return request

    def send(self, request: httpx.Request) -> httpx.Response:
        return self.http.send(request)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.send(self.build(method, path, **kw))

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(
        self,
        path: str,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        **kw: Any,
    ) -> httpx.Response:
        return self.request(
            "POST",
            path,
            json=json,
            idempotency_key=idempotency_key,
            headers=headers,
            content=content,
            **kw,
        )

    def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, json=json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)


def create_client_record(
    database_url: str,
    *,
    name: str,
    scopes: Iterable[str],
    private_key: Ed25519PrivateKey,
    owner: str | None = None,
) -> identity_api.CreatedClient:
    """Create a client straight through the identity api (as the CLI bootstrap does)."""

    async def create() -> identity_api.CreatedClient:
        engine = create_engine(database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await identity_api.create_client(
                    session,
                    name=name,
                    scopes=list(scopes),
                    public_key_pem=public_pem(private_key),
                    owner=owner,
                )
        finally:
            await engine.dispose()

    return asyncio.run(create())


class ClientFactory:
    """`client_factory(scopes=[...], name=None, http=None)` -> a ready ApiClient."""

    def __init__(self, database_url: str, default_http: httpx.Client) -> None:
        self._database_url = database_url
        self._default_http = default_http
        self._count = 0

    def __call__(
        self,
        scopes: Iterable[str],
        name: str | None = None,
        http: httpx.Client | None = None,
    ) -> ApiClient:
        self._count += 1
        private_key = new_private_key()
        scope_list = list(scopes)
        created = create_client_record(
            self._database_url,
            name=name or f"test-client-{self._count}",
            scopes=scope_list,
            private_key=private_key,
        )
        return ApiClient(
            http or self._default_http,
            client_id=created.client.id,
            client_secret=created.client_secret,
            key_id=created.key_id,
            private_key=private_key,
            scopes=scope_list,
        )
