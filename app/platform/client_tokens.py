"""Client-credentials access tokens on the caller's side: `TokenCache` / `AsyncTokenCache`
fetch a token and reuse it until shortly before it expires, with a timeout and a bounded,
jittered retry."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import stamina

from app.platform.client_credentials import ClientCredentials
from app.platform.retries import FullJitter

OAUTH_PATH = "/v1/oauth/token"
# Tokens live at most 300 s; renewing 30 s early keeps a slow request from carrying a
# token that expires on its way to the server.
TOKEN_REFRESH_MARGIN_S = 30.0
TOKEN_MAX_ATTEMPTS = 3
TOKEN_RETRY_BASE_MS = 200
TOKEN_RETRY_CAP_MS = 2000
TOKEN_RETRY_TOTAL_S = 30.0


class TokenRequestError(Exception):
    """The token endpoint refused the credentials or stayed unreachable after retries."""

    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code


class _RetryableAnswerError(Exception):
    """The token endpoint answered 5xx or 429: worth another attempt."""


def _backoff() -> FullJitter:
    # Full jitter, so that many clients whose tokens expired together do not retry together.
    return FullJitter(
        lambda error: isinstance(error, httpx.HTTPError | _RetryableAnswerError),
        TOKEN_RETRY_BASE_MS,
        TOKEN_RETRY_CAP_MS,
    )


def _answered(response: httpx.Response) -> httpx.Response:
    if _retryable(response):
        raise _RetryableAnswerError(f"token endpoint answered {response.status_code}")
    return response


def _gave_up(error: Exception) -> TokenRequestError:
    if isinstance(error, httpx.HTTPError):
        return TokenRequestError(f"token endpoint unreachable: {error!r}")
    return TokenRequestError(str(error))


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
        try:
            for attempt in stamina.retry_context(
                on=_backoff(), attempts=TOKEN_MAX_ATTEMPTS, timeout=TOKEN_RETRY_TOTAL_S
            ):
                with attempt:
                    form = self._state.cached_form()
                    return self._state.accept(
                        _answered(self._http.post(self._token_path, data=form))
                    )
        except (httpx.HTTPError, _RetryableAnswerError) as error:
            raise _gave_up(error) from None
        raise TokenRequestError("no attempt made")

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
            try:
                async for attempt in stamina.retry_context(
                    on=_backoff(), attempts=TOKEN_MAX_ATTEMPTS, timeout=TOKEN_RETRY_TOTAL_S
                ):
                    with attempt:
                        form = self._state.cached_form()
                        answer = await self._http.post(self._token_path, data=form)
                        return self._state.accept(_answered(answer))
            except (httpx.HTTPError, _RetryableAnswerError) as error:
                raise _gave_up(error) from None
            raise TokenRequestError("no attempt made")

    def forget(self) -> None:
        self._state.token = None
