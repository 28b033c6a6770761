"""Sends one adapter request with the shared resilience rules.

Per HTTP attempt: ask the provider's breaker for a permit, send with the operation's
timeout (a hard total deadline, not only httpx's per-phase limits), read at most
MAX_RESPONSE_BYTES, log one line (provider, operation, status, latency_ms, attempt,
breaker) and feed the breaker. Timeouts, transport errors, 429 and 5xx are retried with
stamina, capped exponential backoff with full jitter (`platform.retries.FullJitter`), and
only when the request is safe to repeat: a GET, or a POST that carries the provider's
idempotency key. Every adapter request does, so the rule is a guard.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import stamina
import structlog
from prometheus_client import Counter, Gauge, Histogram

from app.platform import tracing
from app.platform.retries import FullJitter
from app.providers.adapters import Adapter, Reading, Request, UnreadableResponseError
from app.providers.breaker import CircuitBreaker
from app.providers.config import ProviderSettings
from app.providers.domain import ProviderName, ProviderOperation, ProviderUnavailableError

log = structlog.get_logger("moneypath.providers")

MAX_RESPONSE_BYTES = 1024 * 1024
MAX_SETTLEMENT_BYTES = 256 * 1024 * 1024
IDEMPOTENCY_HEADERS = frozenset({"idempotency-key", "globex-request-key"})

CALLS = Counter(
    "moneypath_provider_calls_total",
    "Provider HTTP attempts by provider, operation and result.",
    ["provider", "operation", "result"],
)
LATENCY = Histogram(
    "moneypath_provider_call_duration_seconds",
    "Provider HTTP attempt latency.",
    ["provider", "operation"],
)
BREAKER = Gauge(
    "moneypath_provider_breaker_state",
    "1 for the breaker's current state, 0 for the others, per provider.",
    ["provider", "state"],
)


class RetryableFailureError(Exception):
    """An attempt that failed in a way worth retrying. `reached` says whether the request
    may have reached the provider (False only for a failed connect)."""

    def __init__(self, what: str, *, reached: bool) -> None:
        super().__init__(what)
        self.reached = reached


class BreakerOpenError(Exception):
    pass


class ProviderRefusedUsError(Exception):
    """The provider refused our credentials (401/403): not retried, not processed."""


@dataclass(frozen=True, slots=True)
class Answer:
    reading: Reading | None  # None for a lookup that found nothing, or a raw body
    attempts: int
    raw: bytes
    found: bool = True


class Caller:
    """One per provider: its adapter, its breaker, and the shared HTTP client."""

    def __init__(
        self,
        adapter: Adapter,
        *,
        base_url: str,
        settings: ProviderSettings,
        http: httpx.AsyncClient,
    ) -> None:
        self.adapter = adapter
        self.provider: ProviderName = adapter.name
        self._base_url = base_url
        self._settings = settings
        self._http = http
        self.breaker = CircuitBreaker(
            adapter.name,
            failure_threshold=settings.breaker_failure_threshold,
            reset_ms=settings.breaker_reset_ms,
        )
        for state in ("closed", "open", "half_open"):
            BREAKER.labels(adapter.name, state).set_function(self._is_state(state))

    def _is_state(self, state: str) -> Callable[[], float]:
        return lambda: 1.0 if self.breaker.state == state else 0.0

    @tracing.traced("provider.adapter")
    async def call(self, request: Request, *, raw_body: bool = False) -> Answer:
        """Run `request` with retries. Raises ProviderUnavailableError."""
        settings = self._settings
        retry_safe = request.method == "GET" or bool(
            IDEMPOTENCY_HEADERS & {name.lower() for name in request.headers}
        )
        attempts = 0
        reached = False

        backoff = FullJitter(
            lambda error: retry_safe and isinstance(error, RetryableFailureError),
            settings.retry_backoff_base_ms,
            settings.retry_backoff_cap_ms,
        )
        try:
            async for attempt in stamina.retry_context(
                on=backoff,
                attempts=settings.retry_attempts,
                timeout=settings.retry_total_ms / 1000,
            ):
                with attempt:
                    attempts += 1
                    try:
                        with tracing.provider_call(
                            self.provider, str(request.operation), attempt=attempts
                        ):
                            return await self._attempt(request, attempts, raw_body)
                    except RetryableFailureError as error:
                        reached = reached or error.reached
                        raise
        except ProviderRefusedUsError as error:
            raise ProviderUnavailableError(
                f"{self.provider} {request.operation}: {error}",
                provider=self.provider,
                operation=request.operation,
                attempted=False,
                attempts=attempts,
            ) from None
        except BreakerOpenError:
            raise ProviderUnavailableError(
                f"{self.provider} circuit breaker is open",
                provider=self.provider,
                operation=request.operation,
                attempted=reached,
                attempts=attempts - 1,
            ) from None
        except RetryableFailureError as error:
            raise ProviderUnavailableError(
                f"{self.provider} {request.operation} failed after {attempts} attempts: {error}",
                provider=self.provider,
                operation=request.operation,
                attempted=reached,
                attempts=attempts,
            ) from None
        raise AssertionError("unreachable: stamina re-raises or we returned")  # pragma: no cover

    async def _attempt(self, request: Request, attempt: int, raw_body: bool) -> Answer:
        permit = self.breaker.try_acquire()
        if permit is None:
            self._log(request, attempt, "breaker_open", 0.0)
            raise BreakerOpenError
        timeout_s = self._settings.timeouts_ms[request.operation] / 1000
        limit = (
            MAX_SETTLEMENT_BYTES
            if request.operation is ProviderOperation.SETTLEMENT
            else MAX_RESPONSE_BYTES
        )
        started = time.perf_counter()
        status = "error"
        healthy = False
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    status_code, body = await self._send(request, timeout_s, limit)
            except TimeoutError:
                status = "timeout"
                raise RetryableFailureError(
                    f"timed out after {timeout_s:.3f} s", reached=True
                ) from None
            except httpx.ConnectError as error:
                status = "connect_error"
                raise RetryableFailureError(type(error).__name__, reached=False) from None
            except httpx.TimeoutException as error:
                status = "timeout"
                reached = not isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout)
                raise RetryableFailureError(type(error).__name__, reached=reached) from None
            except httpx.HTTPError as error:
                status = "transport_error"
                raise RetryableFailureError(type(error).__name__, reached=True) from None
            status = str(status_code)
            if status_code >= 500 or status_code == 429:
                raise RetryableFailureError(f"HTTP {status_code}", reached=True)
            try:
                answer = self._read(request, status_code, body, attempt, raw_body)
            except ProviderRefusedUsError:
                healthy = True  # the provider is up; it is our key that is wrong
                raise
            healthy = True
            return answer
        except UnreadableResponseError as error:
            status = f"{status}_unreadable"
            raise RetryableFailureError(f"unreadable answer: {error}", reached=True) from None
        finally:
            latency_s = time.perf_counter() - started
            if healthy:
                self.breaker.record_success(permit)
            else:
                # Failures and cancellations alike: a trial that never reports must not
                # leave the breaker half-open for ever.
                self.breaker.record_failure(permit)
            CALLS.labels(self.provider, request.operation, status).inc()
            LATENCY.labels(self.provider, request.operation).observe(latency_s)
            self._log(request, attempt, status, latency_s)

    async def _send(self, request: Request, timeout_s: float, limit: int) -> tuple[int, bytes]:
        async with self._http.stream(
            request.method,
            self._base_url + request.path,
            json=request.json,
            headers=dict(request.headers),
            timeout=httpx.Timeout(timeout_s),
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise UnreadableResponseError(f"response larger than {limit} bytes")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks)

    def _read(
        self, request: Request, status_code: int, body: bytes, attempt: int, raw_body: bool
    ) -> Answer:
        if status_code in {401, 403}:
            # Our key is wrong or revoked: no retry helps and nothing was processed.
            raise ProviderRefusedUsError(f"HTTP {status_code}: the provider refused our API key")
        if (
            request.operation in {ProviderOperation.LOOKUP, ProviderOperation.STATUS}
            and status_code == 404
        ):
            return Answer(reading=None, attempts=attempt, raw=b"", found=False)
        if raw_body:
            if status_code != 200:
                raise UnreadableResponseError(f"settlement file answered HTTP {status_code}")
            return Answer(reading=None, attempts=attempt, raw=body)
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            raise UnreadableResponseError(f"HTTP {status_code} body is not JSON") from None
        reading = self.adapter.read(request, status_code, parsed)
        return Answer(reading=reading, attempts=attempt, raw=body)

    def _log(self, request: Request, attempt: int, status: str, latency_s: float) -> None:
        log.info(
            "provider_call",
            provider=self.provider,
            operation=str(request.operation),
            status=status,
            latency_ms=round(latency_s * 1000, 1),
            attempt=attempt,
            breaker=self.breaker.state,
        )
