"""The providers domain's public door: the adapters behind one interface.

Build one `ProviderClients` at start-up in the composition root and share it:

    secrets = providers_api.read_provider_secrets(vault)      # kv/moneypath/providers/<name>
    clients = providers_api.ProviderClients(providers_api.ProviderSettings.from_env(), secrets)
    ...
    await clients.aclose()                                     # on shutdown

Every operation takes our idempotency key and sends it as the provider's idempotency key,
so a retry (ours or stamina's) never charges twice: use one key per provider operation and
reuse it when you retry or resume that operation. Amounts are integer minor units.

Outcomes:
- A business answer (approved, declined, pending, or failed = the provider refused the
  request, e.g. capture more than authorized) comes back as a `ProviderResult`.
- No usable answer raises `ProviderUnavailableError` (503 `provider_unavailable`). Its
  `attempted` is False only when nothing can have reached the provider (breaker open, or
  every attempt failed to connect): only then may another provider be tried. When True the
  outcome is unknown: call `lookup` with the same key before anything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.providers import settlement, webhooks
from app.providers.adapters import Request, adapter_for
from app.providers.caller import Caller
from app.providers.config import (
    ProviderSecrets,
    ProviderSettings,
    ensure_provider_secrets,
    read_provider_secrets,
)
from app.providers.domain import (
    PROVIDERS,
    BreakerState,
    ProviderCharge,
    ProviderEvent,
    ProviderEventType,
    ProviderName,
    ProviderOperation,
    ProviderOutcome,
    ProviderResult,
    ProviderUnavailableError,
    SettlementFileError,
    SettlementLine,
    UnknownProviderError,
    WebhookSignatureError,
    provider_name,
)

__all__ = [
    "PROVIDERS",
    "SETTLEMENT_LINES",
    "BreakerState",
    "ProviderCharge",
    "ProviderClients",
    "ProviderEvent",
    "ProviderEventType",
    "ProviderName",
    "ProviderOperation",
    "ProviderOutcome",
    "ProviderResult",
    "ProviderSecrets",
    "ProviderSettings",
    "ProviderUnavailableError",
    "SettlementFileError",
    "SettlementLine",
    "UnknownProviderError",
    "WebhookSignatureError",
    "ensure_provider_secrets",
    "provider_name",
    "read_provider_secrets",
    "stage_settlement_file",
]


class ProviderClients:
    """The adapters of every provider, each with its own circuit breaker.

    Safe to share across tasks of one event loop. `http` may be given (tests); otherwise
    a pooled httpx client is made, bounded by `settings.max_connections`.
    """

    def __init__(
        self,
        settings: ProviderSettings,
        secrets: Mapping[ProviderName, ProviderSecrets],
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self._secrets = dict(secrets)
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_connections,
            ),
            follow_redirects=False,
            trust_env=False,
        )
        self._callers = {
            name: Caller(
                adapter_for(name, self._secret(name).api_key),
                base_url=settings.base_urls[name],
                settings=settings,
                http=self._http,
            )
            for name in PROVIDERS
        }

    def rotate_secrets(self, secrets: Mapping[ProviderName, ProviderSecrets]) -> None:
        """Use new API keys and webhook secrets (re-read from Vault after a rotation);
        breakers keep their state. Raises UnknownProviderError."""
        for name, secret in secrets.items():
            self._secrets[provider_name(name)] = secret
            self._callers[name].adapter = adapter_for(name, secret.api_key)

    def _secret(self, provider: str) -> ProviderSecrets:
        name = provider_name(provider)
        if name not in self._secrets:
            raise UnknownProviderError(f"no secrets configured for provider {name!r}")
        return self._secrets[name]

    def _caller(self, provider: str) -> Caller:
        return self._callers[provider_name(provider)]

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ---- operations -----------------------------------------------------------------
    async def authorize(
        self,
        provider: str,
        *,
        card_token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
        capture: bool,
    ) -> ProviderResult:
        """Authorize (and with `capture=True` also capture) a card payment.

        Raises UnknownProviderError, ProviderUnavailableError.
        """
        caller = self._caller(provider)
        request = caller.adapter.authorize(
            card_token=card_token,
            amount_minor=amount_minor,
            currency=currency,
            key=idempotency_key,
            capture=capture,
        )
        return await _result(caller, request)

    async def capture(
        self,
        provider: str,
        *,
        provider_reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
    ) -> ProviderResult:
        """Capture `amount_minor` (all or part) of an authorization; the provider releases
        nothing by itself. Raises UnknownProviderError, ProviderUnavailableError."""
        caller = self._caller(provider)
        request = caller.adapter.capture(
            reference=provider_reference,
            amount_minor=amount_minor,
            currency=currency,
            key=idempotency_key,
        )
        return await _result(caller, request)

    async def void(
        self, provider: str, *, provider_reference: str, idempotency_key: str
    ) -> ProviderResult:
        """Cancel an uncaptured authorization. Raises UnknownProviderError,
        ProviderUnavailableError."""
        caller = self._caller(provider)
        request = caller.adapter.void(reference=provider_reference, key=idempotency_key)
        return await _result(caller, request)

    async def refund(
        self,
        provider: str,
        *,
        provider_reference: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
    ) -> ProviderResult:
        """Refund part or all of the captured amount; call again (new key) for another
        partial refund. `operation_reference` is the refund's id. Raises
        UnknownProviderError, ProviderUnavailableError."""
        caller = self._caller(provider)
        request = caller.adapter.refund(
            reference=provider_reference,
            amount_minor=amount_minor,
            currency=currency,
            key=idempotency_key,
        )
        return await _result(caller, request)

    async def payout(
        self,
        provider: str,
        *,
        bank_token: str,
        amount_minor: int,
        currency: str,
        idempotency_key: str,
    ) -> ProviderResult:
        """Pay out to a tokenised bank account. Raises UnknownProviderError,
        ProviderUnavailableError."""
        caller = self._caller(provider)
        request = caller.adapter.payout(
            bank_token=bank_token,
            amount_minor=amount_minor,
            currency=currency,
            key=idempotency_key,
        )
        return await _result(caller, request)

    async def lookup(self, provider: str, *, idempotency_key: str) -> ProviderResult | None:
        """What really happened to the operation sent with `idempotency_key`, from the
        provider's status endpoint; None when the provider never processed it (then it is
        safe to send it again with the same key). `result.operation` names the operation.
        Raises UnknownProviderError, ProviderUnavailableError."""
        caller = self._caller(provider)
        return await _result_or_none(caller, caller.adapter.lookup(key=idempotency_key))

    async def charge_status(
        self, provider: str, *, provider_reference: str
    ) -> ProviderCharge | None:
        """A charge's amounts as the provider holds them now, or None if it has no such
        charge. Use it when a webhook cannot be verified: take the reference it claims
        only as a question, never its body as an answer. Raises UnknownProviderError,
        ProviderUnavailableError."""
        caller = self._caller(provider)
        request = caller.adapter.charge_status(reference=provider_reference)
        answer = await caller.call(request, raw_body=True)
        if not answer.found:
            return None
        try:
            return caller.adapter.read_charge(json.loads(answer.raw))
        except (ValueError, KeyError) as error:
            raise ProviderUnavailableError(
                f"{caller.provider} status unreadable: {error}",
                provider=caller.provider,
                operation=ProviderOperation.STATUS,
                attempted=True,
                attempts=answer.attempts,
            ) from None

    async def fetch_settlement_file(self, provider: str, settlement_date: date) -> bytes:
        """The provider's settlement CSV for one day, as served (feed it to
        `stage_settlement_file`). Raises UnknownProviderError, ProviderUnavailableError."""
        caller = self._caller(provider)
        answer = await caller.call(
            caller.adapter.settlement(settlement_date=settlement_date), raw_body=True
        )
        return answer.raw

    # ---- state and inbound ------------------------------------------------------------
    def breaker_state(self, provider: str) -> BreakerState:
        """closed, open or half_open. Raises UnknownProviderError."""
        return self._caller(provider).breaker.state

    def verify_webhook(
        self, provider: str, headers: Mapping[str, str], body: bytes
    ) -> ProviderEvent:
        """Verify a provider webhook (Standard Webhooks) with that provider's secret and
        read it. Deduplicate by `event.event_id`. Raises UnknownProviderError and
        WebhookSignatureError (bad or missing signature, stale timestamp, or a signed body
        we cannot read): then do not trust the body; ask the provider (`lookup`) instead."""
        name = provider_name(provider)
        return webhooks.verify(
            name,
            self._secret(name).webhook_secrets,
            headers,
            body,
            tolerance_s=self.settings.webhook_tolerance_s,
        )


SETTLEMENT_LINES = settlement.SETTLEMENT_LINES


async def stage_settlement_file(session: AsyncSession, provider: str, data: bytes) -> int:
    """Load a provider's settlement CSV into the temporary view `settlement_lines` (integer
    minor units; dropped at the end of the transaction) and return its number of lines:
    for a caller that matches a million lines in SQL. Columns: line_number,
    settlement_date, kind, ref (the reference when the line names exactly one, else ''),
    refs (the references when it names several, else NULL), op, gross_minor, fee_minor,
    net_minor, currency.

    Raises UnknownProviderError, and SettlementFileError naming the first bad line (the
    transaction is then unusable: roll it back).
    """
    return await settlement.stage(session, provider_name(provider), data)


async def _result(caller: Caller, request: Request) -> ProviderResult:
    found = await _result_or_none(caller, request)
    if found is None:
        raise ProviderUnavailableError(
            f"{caller.provider} answered without a result",
            provider=caller.provider,
            operation=ProviderOperation.LOOKUP,
            attempted=True,
            attempts=1,
        )
    return found


async def _result_or_none(caller: Caller, request: Request) -> ProviderResult | None:
    answer = await caller.call(request)
    reading = answer.reading
    if reading is None:
        return None
    return ProviderResult(
        provider=caller.provider,
        operation=reading.operation,
        outcome=reading.outcome,
        provider_reference=reading.provider_reference,
        operation_reference=reading.operation_reference,
        amount_minor=reading.amount_minor,
        currency=reading.currency,
        raw_status=reading.raw_status,
        decline_code=reading.decline_code,
        attempts=answer.attempts,
    )
