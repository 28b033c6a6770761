"""One adapter per provider: how to phrase each operation in its API, how to read its answer.

The adapters only build requests and read responses; sending, timeouts, retries, the
breaker and logging live in `caller.py`, shared by both, so each provider gets exactly
the same resilience rules.

- `acme`: flat JSON, integer minor units (`amount`), upper-case `status`
  (`AUTHORIZED`, `SETTLED`, `DECLINED`, ...), `Authorization: Bearer`, `Idempotency-Key`.
- `globex`: an envelope `{"data": {..., "state": ...}, "meta": {...}}`, decimal-string
  `money.value`, `X-Api-Key`, `Globex-Request-Key` as its idempotency header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol
from urllib.parse import quote

from app.providers.domain import (
    ProviderCharge,
    ProviderName,
    ProviderOperation,
    ProviderOutcome,
    decimal_to_minor,
    minor_to_decimal,
    outcome_of,
)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    json: Mapping[str, Any] | None
    headers: Mapping[str, str]
    operation: ProviderOperation


@dataclass(frozen=True, slots=True)
class Reading:
    """What an adapter read from one response (ProviderResult minus the attempt count)."""

    outcome: ProviderOutcome
    provider_reference: str | None
    operation_reference: str | None
    amount_minor: int | None
    currency: str | None
    raw_status: str
    decline_code: str | None
    operation: ProviderOperation


class UnreadableResponseError(ValueError):
    """The provider answered 2xx/4xx with a body we cannot read: treated like a 5xx."""


class Adapter(Protocol):
    name: ProviderName

    def authorize(
        self, *, card_token: str, amount_minor: int, currency: str, key: str, capture: bool
    ) -> Request: ...
    def capture(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request: ...
    def void(self, *, reference: str, key: str) -> Request: ...
    def refund(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request: ...
    def payout(self, *, bank_token: str, amount_minor: int, currency: str, key: str) -> Request: ...
    def lookup(self, *, key: str) -> Request: ...
    def settlement(self, *, settlement_date: date) -> Request: ...
    def charge_status(self, *, reference: str) -> Request: ...
    def read(self, request: Request, status_code: int, body: Any) -> Reading: ...
    def read_charge(self, body: Any) -> ProviderCharge: ...


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UnreadableResponseError(f"{what} is not an object")
    return value


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise UnreadableResponseError(f"{what} is not a string")
    return value


def _operation(raw: Any, fallback: ProviderOperation) -> ProviderOperation:
    try:
        return ProviderOperation(raw) if isinstance(raw, str) else fallback
    except ValueError:
        return fallback


class AcmeAdapter:
    name: ProviderName = "acme"

    def __init__(self, api_key: str) -> None:
        self._auth = {"Authorization": f"Bearer {api_key}"}

    def _post(
        self, path: str, body: Mapping[str, Any] | None, key: str, operation: ProviderOperation
    ) -> Request:
        return Request("POST", path, body, {**self._auth, "Idempotency-Key": key}, operation)

    def authorize(
        self, *, card_token: str, amount_minor: int, currency: str, key: str, capture: bool
    ) -> Request:
        body = {"card_token": card_token, "amount": amount_minor, "currency": currency}
        return self._post(
            "/v1/charges", {**body, "capture": capture}, key, ProviderOperation.AUTHORIZE
        )

    def capture(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request:
        path = f"/v1/charges/{quote(reference, safe='')}/capture"
        body = {"amount": amount_minor, "currency": currency}
        return self._post(path, body, key, ProviderOperation.CAPTURE)

    def void(self, *, reference: str, key: str) -> Request:
        path = f"/v1/charges/{quote(reference, safe='')}/void"
        return self._post(path, None, key, ProviderOperation.VOID)

    def refund(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request:
        path = f"/v1/charges/{quote(reference, safe='')}/refunds"
        body = {"amount": amount_minor, "currency": currency}
        return self._post(path, body, key, ProviderOperation.REFUND)

    def payout(self, *, bank_token: str, amount_minor: int, currency: str, key: str) -> Request:
        body = {"bank_token": bank_token, "amount": amount_minor, "currency": currency}
        return self._post("/v1/payouts", body, key, ProviderOperation.PAYOUT)

    def lookup(self, *, key: str) -> Request:
        path = f"/v1/operations/{quote(key, safe='')}"
        return Request("GET", path, None, self._auth, ProviderOperation.LOOKUP)

    def settlement(self, *, settlement_date: date) -> Request:
        path = f"/v1/settlements/{settlement_date.isoformat()}.csv"
        return Request("GET", path, None, self._auth, ProviderOperation.SETTLEMENT)

    def charge_status(self, *, reference: str) -> Request:
        path = f"/v1/charges/{quote(reference, safe='')}"
        return Request("GET", path, None, self._auth, ProviderOperation.STATUS)

    def read_charge(self, body: Any) -> ProviderCharge:
        data = _dict(body, "acme charge")
        amounts = [data.get(name) for name in ("amount", "captured", "refunded")]
        if not all(isinstance(a, int) and not isinstance(a, bool) for a in amounts):
            raise UnreadableResponseError("acme charge amounts are not integers")
        return ProviderCharge(
            provider="acme",
            provider_reference=_str(data.get("id"), "acme id"),
            amount_minor=int(data["amount"]),
            currency=_str(data.get("currency"), "acme currency"),
            captured_minor=int(data["captured"]),
            refunded_minor=int(data["refunded"]),
            voided=data.get("voided") is True,
        )

    def read(self, request: Request, status_code: int, body: Any) -> Reading:
        data = _dict(body, "acme response")
        if "error" in data and "status" not in data:
            error = _dict(data["error"], "acme error")
            return Reading(
                outcome=ProviderOutcome.FAILED,
                provider_reference=None,
                operation_reference=None,
                amount_minor=None,
                currency=None,
                raw_status=f"HTTP_{status_code}",
                decline_code=str(error.get("code") or "error"),
                operation=_operation(data.get("operation"), request.operation),
            )
        raw_status = _str(data.get("status"), "acme status")
        operation = _operation(data.get("operation"), request.operation)
        own_id = _str(data.get("id"), "acme id")
        charge = data.get("charge")
        amount = data.get("amount")
        if amount is not None and (not isinstance(amount, int) or isinstance(amount, bool)):
            raise UnreadableResponseError("acme amount is not an integer")
        currency = data.get("currency")
        return Reading(
            outcome=outcome_of("acme", raw_status),
            provider_reference=charge if isinstance(charge, str) else own_id,
            operation_reference=own_id,
            amount_minor=amount,
            currency=currency if isinstance(currency, str) else None,
            raw_status=raw_status,
            decline_code=data.get("decline_code") or None,
            operation=operation,
        )


class GlobexAdapter:
    name: ProviderName = "globex"

    def __init__(self, api_key: str) -> None:
        self._auth = {"X-Api-Key": api_key}

    def _post(
        self, path: str, body: Mapping[str, Any] | None, key: str, operation: ProviderOperation
    ) -> Request:
        return Request("POST", path, body, {**self._auth, "Globex-Request-Key": key}, operation)

    @staticmethod
    def _money(amount_minor: int, currency: str) -> dict[str, str]:
        return {"value": minor_to_decimal(amount_minor, currency), "currency": currency}

    def authorize(
        self, *, card_token: str, amount_minor: int, currency: str, key: str, capture: bool
    ) -> Request:
        body = {
            "paymentMethod": {"token": card_token},
            "money": self._money(amount_minor, currency),
            "autoCapture": capture,
        }
        return self._post("/api/payments", body, key, ProviderOperation.AUTHORIZE)

    def capture(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request:
        path = f"/api/payments/{quote(reference, safe='')}/captures"
        body = {"money": self._money(amount_minor, currency)}
        return self._post(path, body, key, ProviderOperation.CAPTURE)

    def void(self, *, reference: str, key: str) -> Request:
        path = f"/api/payments/{quote(reference, safe='')}/cancellations"
        return self._post(path, None, key, ProviderOperation.VOID)

    def refund(self, *, reference: str, amount_minor: int, currency: str, key: str) -> Request:
        path = f"/api/payments/{quote(reference, safe='')}/refunds"
        body = {"money": self._money(amount_minor, currency)}
        return self._post(path, body, key, ProviderOperation.REFUND)

    def payout(self, *, bank_token: str, amount_minor: int, currency: str, key: str) -> Request:
        body = {
            "destination": {"bankToken": bank_token},
            "money": self._money(amount_minor, currency),
        }
        return self._post("/api/transfers", body, key, ProviderOperation.PAYOUT)

    def lookup(self, *, key: str) -> Request:
        path = f"/api/requests/{quote(key, safe='')}"
        return Request("GET", path, None, self._auth, ProviderOperation.LOOKUP)

    def settlement(self, *, settlement_date: date) -> Request:
        path = f"/api/reports/settlement?date={settlement_date.isoformat()}"
        return Request("GET", path, None, self._auth, ProviderOperation.SETTLEMENT)

    def charge_status(self, *, reference: str) -> Request:
        path = f"/api/payments/{quote(reference, safe='')}"
        return Request("GET", path, None, self._auth, ProviderOperation.STATUS)

    def read_charge(self, body: Any) -> ProviderCharge:
        data = _dict(_dict(body, "globex response").get("data"), "globex data")

        def minor(name: str) -> tuple[int, str]:
            money = _dict(data.get(name), f"globex {name}")
            currency = _str(money.get("currency"), "globex currency")
            try:
                return decimal_to_minor(
                    _str(money.get("value"), "globex value"), currency
                ), currency
            except ValueError as error:
                raise UnreadableResponseError(str(error)) from None

        amount, currency = minor("money")
        return ProviderCharge(
            provider="globex",
            provider_reference=_str(data.get("paymentId"), "globex paymentId"),
            amount_minor=amount,
            currency=currency,
            captured_minor=minor("captured")[0],
            refunded_minor=minor("refunded")[0],
            voided=data.get("cancelled") is True,
        )

    def read(self, request: Request, status_code: int, body: Any) -> Reading:
        envelope = _dict(body, "globex response")
        data = _dict(envelope.get("data"), "globex data")
        raw_status = _str(data.get("state"), "globex state")
        money = data.get("money")
        amount_minor: int | None = None
        currency: str | None = None
        if isinstance(money, dict):
            currency = _str(money.get("currency"), "globex currency")
            try:
                amount_minor = decimal_to_minor(_str(money.get("value"), "globex value"), currency)
            except ValueError as error:
                raise UnreadableResponseError(str(error)) from None
        payment_id = data.get("paymentId") or data.get("transferId")
        own_id = data.get("captureId") or data.get("refundId") or data.get("cancellationId")
        return Reading(
            outcome=outcome_of("globex", raw_status),
            provider_reference=payment_id if isinstance(payment_id, str) else None,
            operation_reference=own_id if isinstance(own_id, str) else payment_id,
            amount_minor=amount_minor,
            currency=currency,
            raw_status=raw_status,
            decline_code=data.get("reason") or None,
            operation=_operation(data.get("kind"), request.operation),
        )


def adapter_for(provider: ProviderName, api_key: str) -> Adapter:
    if provider == "acme":
        return AcmeAdapter(api_key)
    return GlobexAdapter(api_key)
