"""The one client-side way to call moneypath: an OAuth2 token plus RFC 9421 signatures.

Every write to `/v1/*` needs a bearer token bound to the client's Ed25519 key, a request
signature over `@method @target-uri content-digest idempotency-key` (label `sig1`, with
`created`, `keyid` and a fresh `nonce`) and an `Idempotency-Key`. Signing goes through the
independent `http-message-signatures` library, as an outside integrator would, so a
caller that succeeds through this module also proves the server interoperates.

Three pieces, smallest first:
- `sign_request(request, key_id=, private_key=)` signs an `httpx.Request` in place;
- `TokenCache` / `AsyncTokenCache` fetch a client-credentials token and reuse it until
  shortly before it expires, with a timeout and a bounded, jittered retry;
- `SignedClient` / `AsyncSignedClient` put both together: `client.post(path, json=...)`.

Used by the CLI (`moneypath call`), the pipeline's evidence client, the load tests and the
test suite's API client.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

SIGNATURE_LABEL = "sig1"
OAUTH_PATH = "/v1/oauth/token"
SIGNED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Tokens live at most 300 s; renewing 30 s early keeps a slow request from carrying a
# token that expires on its way to the server.
TOKEN_REFRESH_MARGIN_S = 30.0
TOKEN_MAX_ATTEMPTS = 3
TOKEN_RETRY_BASE_S = 0.2
TOKEN_RETRY_CAP_S = 2.0
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


class TokenRequestError(Exception):
    """The token endpoint refused the credentials or stayed unreachable after retries."""

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class CredentialsFileError(ValueError):
    """A credentials file is missing a field, unreadable, or names a key that is not Ed25519."""


@dataclass(frozen=True)
class ClientCredentials:
    """What a client needs to call the API: its id and secret, and its bound signing key."""

    client_id: str
    client_secret: str = field(repr=False)
    key_id: str
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def from_file(cls, path: Path) -> ClientCredentials:
        """Read a credentials file written by `moneypath clients create --out`.

        It is JSON with `client_id`, `client_secret`, `key_id` and `key_path` (a PEM file,
        relative paths resolved against the credentials file). Raises CredentialsFileError.
        """
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CredentialsFileError(f"cannot read credentials {path}: {error}") from None
        if not isinstance(document, dict):
            raise CredentialsFileError(f"{path} must hold a JSON object")
        missing = [
            name
            for name in ("client_id", "client_secret", "key_id", "key_path")
            if not isinstance(document.get(name), str) or not document[name]
        ]
        if missing:
            raise CredentialsFileError(f"{path} lacks {', '.join(missing)}")
        key_path = Path(document["key_path"])
        if not key_path.is_absolute():
            key_path = path.parent / key_path
        return cls(
            client_id=document["client_id"],
            client_secret=document["client_secret"],
            key_id=document["key_id"],
            private_key=load_private_key(key_path),
        )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an unencrypted Ed25519 private key from a PEM file. Raises CredentialsFileError."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CredentialsFileError(f"cannot load private key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CredentialsFileError(f"{path} is not an Ed25519 private key")
    return key


def private_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(private_key: Ed25519PrivateKey) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class _SignableMessage:
    """The message shape HTTPMessageSigner reads and writes: method, url, headers."""

    method: str
    url: str
    headers: httpx.Headers


def sign_request(
    request: httpx.Request,
    *,
    key_id: str,
    private_key: Ed25519PrivateKey,
    created: datetime | None = None,
    nonce: str | None = None,
    expires: datetime | None = None,
) -> None:
    """Sign `request` in place with label sig1 and ed25519.

    Covers `@method` and `@target-uri`, `idempotency-key` when the header is present and
    `content-digest` (RFC 9530 sha-256, added here) when there is a body. `created`
    defaults to now and `nonce` to 32 random base64url characters.
    """
    body = request.read()
    covered = ["@method", "@target-uri"]
    if "idempotency-key" in request.headers:
        covered.append("idempotency-key")
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={key_id: private_key}),
    )
    signer.sign(
        _SignableMessage(request.method, str(request.url), request.headers),
        key_id=key_id,
        created=created,
        expires=expires,
        nonce=nonce or secrets.token_urlsafe(24),
        label=SIGNATURE_LABEL,
        covered_component_ids=covered,
        # An empty body is sent without Content-Digest, as API.md allows for a bodiless POST.
        body=body or None,
    )


def new_idempotency_key() -> str:
    return f"mp-{uuid.uuid4()}"


def _retry_delay_s(attempt: int) -> float:
    # Full jitter on a capped exponential backoff, so that many clients whose tokens
    # expired together do not retry together.
    return random.uniform(0, min(TOKEN_RETRY_CAP_S, TOKEN_RETRY_BASE_S * 2**attempt))  # noqa: S311


@dataclass
class _TokenState:
    """The cached token and the rules for reading a token response; no I/O."""

    credentials: ClientCredentials
    scope: str | None = None
    bind_key: bool = True
    token: str | None = None
    expires_at: float = 0.0

    def cached_form(self) -> dict[str, str]:
        """The form for the cached token: the configured scope, bound to our key."""
        return self.form(self.scope, self.credentials.key_id if self.bind_key else None)

    def form(self, scope: str | None, key_id: str | None) -> dict[str, str]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        if scope is not None:
            form["scope"] = scope
        if key_id is not None:
            form["key_id"] = key_id
        return form

    def fresh(self) -> str | None:
        if self.token is not None and time.monotonic() < self.expires_at:
            return self.token
        return None

    def accept(self, response: httpx.Response) -> str:
        """Cache the token from a 200 answer; raise TokenRequestError for any other."""
        if response.status_code != 200:
            raise TokenRequestError(
                f"token refused: {response.status_code} {response.text[:300]}",
                response.status_code,
            )
        body = response.json()
        self.token = str(body["access_token"])
        lifetime_s = float(body.get("expires_in", 60))
        self.expires_at = time.monotonic() + max(0.0, lifetime_s - TOKEN_REFRESH_MARGIN_S)
        return self.token


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code == 429


class TokenCache:
    """A client-credentials token, fetched on first use and renewed before it expires.

    `scope` narrows the token (default: all the client's scopes). With `bind_key` (the
    default) the token binds `credentials.key_id`; without it the server binds the client's
    newest active key. Transport errors and 5xx/429 answers are retried at most
    TOKEN_MAX_ATTEMPTS times with jittered backoff; a 4xx (wrong secret, unknown scope) is
    raised at once.
    """

    def __init__(
        self,
        http: httpx.Client,
        credentials: ClientCredentials,
        *,
        scope: str | None = None,
        bind_key: bool = True,
        token_path: str = OAUTH_PATH,
    ) -> None:
        self._http = http
        self._state = _TokenState(credentials, scope, bind_key)
        self._token_path = token_path

    def fetch(self, scope: str | None = None, key_id: str | None = None) -> httpx.Response:
        """One raw token request, not cached (for callers that inspect the answer)."""
        return self._http.post(self._token_path, data=self._state.form(scope, key_id))

    def get(self) -> str:
        """The cached token, or a new one. Raises TokenRequestError."""
        cached = self._state.fresh()
        if cached is not None:
            return cached
        problem = "no attempt made"
        for attempt in range(TOKEN_MAX_ATTEMPTS):
            try:
                response = self._http.post(self._token_path, data=self._state.cached_form())
            except httpx.HTTPError as error:
                problem = f"token endpoint unreachable: {error!r}"
            else:
                if not _retryable(response):
                    return self._state.accept(response)
                problem = f"token endpoint answered {response.status_code}"
            if attempt + 1 < TOKEN_MAX_ATTEMPTS:
                time.sleep(_retry_delay_s(attempt))
        raise TokenRequestError(problem)

    def forget(self) -> None:
        self._state.token = None


class AsyncTokenCache:
    """The asyncio twin of TokenCache; concurrent callers share one refresh."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: ClientCredentials,
        *,
        scope: str | None = None,
        bind_key: bool = True,
        token_path: str = OAUTH_PATH,
    ) -> None:
        self._http = http
        self._state = _TokenState(credentials, scope, bind_key)
        self._token_path = token_path
        self._lock = asyncio.Lock()

    async def fetch(self, scope: str | None = None, key_id: str | None = None) -> httpx.Response:
        return await self._http.post(self._token_path, data=self._state.form(scope, key_id))

    async def get(self) -> str:
        """The cached token, or a new one. Raises TokenRequestError."""
        async with self._lock:
            cached = self._state.fresh()
            if cached is not None:
                return cached
            problem = "no attempt made"
            for attempt in range(TOKEN_MAX_ATTEMPTS):
                try:
                    response = await self._http.post(
                        self._token_path, data=self._state.cached_form()
                    )
                except httpx.HTTPError as error:
                    problem = f"token endpoint unreachable: {error!r}"
                else:
                    if not _retryable(response):
                        return self._state.accept(response)
                    problem = f"token endpoint answered {response.status_code}"
                if attempt + 1 < TOKEN_MAX_ATTEMPTS:
                    await asyncio.sleep(_retry_delay_s(attempt))
            raise TokenRequestError(problem)

    def forget(self) -> None:
        self._state.token = None


@dataclass(frozen=True)
class _Prepared:
    headers: dict[str, str]
    sign: bool


def _prepare(
    method: str,
    token: str,
    *,
    idempotency_key: str | None,
    auto_idempotency_key: bool,
    headers: Mapping[str, str] | None,
    sign: bool | None,
) -> _Prepared:
    signed = sign if sign is not None else method.upper() in SIGNED_METHODS
    all_headers = {"Authorization": f"Bearer {token}"}
    if idempotency_key is None and auto_idempotency_key and method.upper() in SIGNED_METHODS:
        idempotency_key = new_idempotency_key()
    if idempotency_key is not None:
        all_headers["Idempotency-Key"] = idempotency_key
    # Caller headers win, so a test or an operator can send a deliberately odd request.
    all_headers.update(headers or {})
    return _Prepared(all_headers, signed)


def _http_client(base_url: str, timeout: httpx.Timeout) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)


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
        prepared = _prepare(
            method,
            self.tokens.get(),
            idempotency_key=idempotency_key,
            auto_idempotency_key=self.auto_idempotency_key,
            headers=headers,
            sign=sign,
        )
        request = self.http.build_request(
            method, path, json=json, content=content, params=params, headers=prepared.headers
        )
        if prepared.sign:
            key_id, private_key = signing_key or (
                self.credentials.key_id,
                self.credentials.private_key,
            )
            sign_request(
                request,
                key_id=key_id,
                private_key=private_key,
                created=created,
                nonce=nonce,
                expires=expires,
            )
        return request

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
        prepared = _prepare(
            method,
            await self.tokens.get(),
            idempotency_key=idempotency_key,
            auto_idempotency_key=self.auto_idempotency_key,
            headers=headers,
            sign=sign,
        )
        request = self.http.build_request(
            method, path, json=json, content=content, params=params, headers=prepared.headers
        )
        if prepared.sign:
            sign_request(
                request,
                key_id=self.credentials.key_id,
                private_key=self.credentials.private_key,
            )
        return await self.http.send(request)

    async def get(self, path: str, **options: Any) -> httpx.Response:
        return await self.request("GET", path, **options)

    async def post(self, path: str, json: Any = None, **options: Any) -> httpx.Response:
        return await self.request("POST", path, json=json, **options)
