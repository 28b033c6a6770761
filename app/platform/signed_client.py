"""The one client-side way to call moneypath: an OAuth2 token plus RFC 9421 signatures.

Every write to `/v1/*` needs a bearer token bound to the client's Ed25519 key, a request
signature over `@method @target-uri content-digest idempotency-key` (label `sig1`, with
`created`, `keyid` and a fresh `nonce`) and an `Idempotency-Key`. Signing goes through the
independent `http-message-signatures` library, as an outside integrator would, so a
caller that succeeds through this module also proves the server interoperates.

Three rooms, smallest first:
- `client_credentials`: the client id, secret and Ed25519 key (`ClientCredentials`);
- `client_signing`: `sign_request(request, key_id=, private_key=)` signs an
  `httpx.Request` in place;
- `client_tokens`: `TokenCache` / `AsyncTokenCache` fetch a client-credentials token and
  reuse it until shortly before it expires, with a timeout and a bounded, jittered retry;
and this module's `SignedClient` / `AsyncSignedClient` put them together:
`client.post(path, json=...)`.

Used by the CLI (`moneypath call`), the pipeline's evidence client, the load tests and the
test suite's API client.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.platform.client_credentials import ClientCredentials
from app.platform.client_signing import prepare_headers, sign_request
from app.platform.client_tokens import AsyncTokenCache, TokenCache

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def _http_client(base_url: str, timeout: httpx.Timeout) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)


def _build(
    http: httpx.Client | httpx.AsyncClient,
    token: str,
    credentials: ClientCredentials,
    auto_idempotency_key: bool,
    method: str,
    path: str,
    *,
    json: Any,
    content: bytes | None,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    idempotency_key: str | None,
    sign: bool | None,
    created: datetime | None = None,
    nonce: str | None = None,
    expires: datetime | None = None,
    signing_key: tuple[str, Ed25519PrivateKey] | None = None,
) -> httpx.Request:
    """One request with its token and Idempotency-Key, signed unless `sign` says not (both
    clients build requests without I/O, so the sync and async clients share this)."""
    prepared = prepare_headers(
        method,
        token,
        idempotency_key=idempotency_key,
        auto_idempotency_key=auto_idempotency_key,
        headers=headers,
        sign=sign,
    )
    request = http.build_request(
        method, path, json=json, content=content, params=params, headers=prepared.headers
    )
    if prepared.sign:
        key_id, private_key = signing_key or (credentials.key_id, credentials.private_key)
        sign_request(
            request,
            key_id=key_id,
            private_key=private_key,
            created=created,
            nonce=nonce,
            expires=expires,
        )
    return request


class SignedClient:
    """Calls the API as one client: token cached, writes signed and given an Idempotency-Key.

    `base_url` must be the API's configured public base URL, because `@target-uri` is
    signed from it. Pass `http` to reuse a client (Starlette's TestClient, say); otherwise
    one with DEFAULT_TIMEOUT is made and closed by `close()`. With `auto_idempotency_key`
    (the default) every POST/PUT/PATCH/DELETE without a key gets a fresh one; to retry a
    write safely, pass the same `idempotency_key` again. `scope` and `bind_key` go to the
    TokenCache.
    """

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        base_url: str | None = None,
        http: httpx.Client | None = None,
        token_http: httpx.Client | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        auto_idempotency_key: bool = True,
        scope: str | None = None,
        bind_key: bool = True,
    ) -> None:
        if http is None and base_url is None:
            raise ValueError("SignedClient needs base_url or http")
        self._owned = http is None
        self.http = http if http is not None else _http_client(str(base_url), timeout)
        self.credentials = credentials
        self.tokens = TokenCache(
            token_http or self.http, credentials, scope=scope, bind_key=bind_key
        )
        self.auto_idempotency_key = auto_idempotency_key

    def __enter__(self) -> SignedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.http.close()

    def build(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        sign: bool | None = None,
        created: datetime | None = None,
        nonce: str | None = None,
        expires: datetime | None = None,
        signing_key: tuple[str, Ed25519PrivateKey] | None = None,
    ) -> httpx.Request:
        """Build the request (signed for writes unless `sign=False`) without sending it."""
        return _build(
            self.http, self.tokens.get(), self.credentials, self.auto_idempotency_key,
            method, path, json=json, content=content, params=params, headers=headers,
            idempotency_key=idempotency_key, sign=sign, created=created, nonce=nonce,
            expires=expires, signing_key=signing_key,
        )  # fmt: skip

    def send(self, request: httpx.Request) -> httpx.Response:
        return self.http.send(request)

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        return self.send(self.build(method, path, **options))

    def get(self, path: str, **options: Any) -> httpx.Response:
        return self.request("GET", path, **options)

    def post(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return self.request("POST", path, json=json, **options)

    def put(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return self.request("PUT", path, json=json, **options)

    def patch(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return self.request("PATCH", path, json=json, **options)

    def delete(self, path: str, **options: Any) -> httpx.Response:
        return self.request("DELETE", path, **options)


class AsyncSignedClient:
    """The asyncio twin of SignedClient, over `httpx.AsyncClient`."""

    def __init__(
        self,
        credentials: ClientCredentials,
        *,
        base_url: str | None = None,
        http: httpx.AsyncClient | None = None,
        token_http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        auto_idempotency_key: bool = True,
        scope: str | None = None,
        bind_key: bool = True,
    ) -> None:
        if http is None and base_url is None:
            raise ValueError("AsyncSignedClient needs base_url or http")
        self._owned = http is None
        self.http = (
            http
            if http is not None
            else httpx.AsyncClient(base_url=str(base_url).rstrip("/"), timeout=timeout)
        )
        self.credentials = credentials
        self.tokens = AsyncTokenCache(
            token_http or self.http, credentials, scope=scope, bind_key=bind_key
        )
        self.auto_idempotency_key = auto_idempotency_key

    async def __aenter__(self) -> AsyncSignedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owned:
            await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        sign: bool | None = None,
    ) -> httpx.Response:
        request = _build(
            self.http, await self.tokens.get(), self.credentials, self.auto_idempotency_key,
            method, path, json=json, content=content, params=params, headers=headers,
            idempotency_key=idempotency_key, sign=sign,
        )  # fmt: skip
        return await self.http.send(request)

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("GET", path, **options)

    async def post(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **options)
