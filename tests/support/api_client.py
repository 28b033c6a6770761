"""A real API client for tests: client credentials, EdDSA token, RFC 9421 signed requests.

Signing is `app.platform.signed_client`, the one client-side signer, which uses the
independent `http-message-signatures` library (HTTPMessageSigner) with RFC 9530
Content-Digest and a fresh nonce per request, exactly as an outside integrator would, so a
test that passes through this client proves interoperability.

It works over any `httpx.Client`: the in-process Starlette `TestClient` (the `api`
fixture) or a plain `httpx.Client(base_url=live_stack.api_url)`. The base URL must be
the API's configured public base URL, because `@target-uri` is signed from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.identity import api as identity_api
from app.platform.client_credentials import ClientCredentials, public_pem
from app.platform.db import create_engine, session_factory
from app.platform.signed_client import SignedClient

__all__ = ["ApiClient", "ClientFactory", "new_private_key", "public_pem"]


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


class ApiClient:
    """One API client with its own Ed25519 key. Mutating requests are signed.

    A thin test-facing face on `app.platform.signed_client.SignedClient`: it never adds an
    Idempotency-Key by itself (tests check what happens without one), and its token binds
    whichever key the server picks, as a client that sends no `key_id` would get.
    """

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
        self.client_id = client_id
        self.client_secret = client_secret
        self.key_id = key_id
        self.private_key = private_key
        self.scopes = tuple(scopes)
        self._signed = SignedClient(
            ClientCredentials(client_id, client_secret, key_id, private_key),
            http=http,
            auto_idempotency_key=False,
            bind_key=False,
        )

    @property
    def http(self) -> httpx.Client:
        return self._signed.http

    @http.setter
    def http(self, http: httpx.Client) -> None:
        # Tests point a client at the evidence service after it got its token from the API:
        # requests go to the new client, tokens keep coming from the first.
        self._signed.http = http

    # ---- tokens -----------------------------------------------------------------------
    def fetch_token(self, scope: str | None = None, key_id: str | None = None) -> httpx.Response:
        return self._signed.tokens.fetch(scope, key_id)

    def token(self) -> str:
        return self._signed.tokens.get()

    def forget_token(self) -> None:
        self._signed.tokens.forget()

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
        return self._signed.build(
            method,
            path,
            json=json,
            content=content,
            idempotency_key=idempotency_key,
            headers=headers,
            params=params,
            sign=sign,
            created=created,
            nonce=nonce,
            expires=expires,
            signing_key=signing_key,
        )

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


def evidence_client(
    factory: ClientFactory,
    api_http: httpx.Client,
    evidence_http: httpx.Client,
    scopes: Iterable[str],
) -> ApiClient:
    """A client whose token comes from the API and whose requests go to evidence (the
    evidence service trusts the API's tokens)."""
    client = factory(scopes=scopes, http=api_http)
    client.token()
    client.http = evidence_http
    return client
