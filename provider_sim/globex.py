"""globex: an enveloped API with decimal-string money and `state` words, X-Api-Key.

    POST /globex/hosted-fields/tokenize            {"cardNumber"} -> {"data": {"token"}}
    POST /globex/api/payments                      {"paymentMethod", "money", "autoCapture"}
    POST /globex/api/payments/{id}/captures        {"money"}
    POST /globex/api/payments/{id}/cancellations
    POST /globex/api/payments/{id}/refunds         {"money"}
    POST /globex/api/transfers                     {"destination": {"bankToken"}, "money"}
    GET  /globex/api/requests/{key}                what happened to the request with `key`
    GET  /globex/api/payments/{id}                 a payment's amounts
    GET  /globex/api/reports/settlement?date=D     the day's settlement file
Every answer is {"data": {..., "state": COMPLETE | REJECTED | INVALID}, "meta": {...}};
money is {"value": "12.34", "currency": "EUR"}. The idempotency header is
Globex-Request-Key.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provider_sim import money
from provider_sim.endpoints import Endpoints, Refusals, Wire
from provider_sim.engine import MAX_AMOUNT_MINOR, Charge, Operation
from provider_sim.flow import BadRequestError, Dialect, Sim

STATE = {"approved": "COMPLETE", "declined": "REJECTED", "failed": "INVALID"}
OWN_ID = {"capture": "captureId", "refund": "refundId"}
EVENTS = {
    ("authorize", "approved"): "AUTHORISATION_COMPLETE",
    ("authorize", "declined"): "AUTHORISATION_REJECTED",
    ("capture", "approved"): "CAPTURE_COMPLETE",
    ("void", "approved"): "CANCELLATION_COMPLETE",
    ("refund", "approved"): "REFUND_COMPLETE",
    ("payout", "approved"): "TRANSFER_COMPLETE",
    ("payout", "declined"): "TRANSFER_REJECTED",
}


def _money(amount: int | None, currency: str | None) -> dict[str, str] | None:
    if amount is None or currency is None:
        return None
    return {"value": money.to_decimal(amount, currency), "currency": currency}


def error(status: int, code: str, message: str) -> Response:
    body = {"data": {"state": "INVALID", "reason": code.upper()}, "meta": {"message": message}}
    return JSONResponse(body, status_code=status)


def data(operation: Operation) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": operation.kind,
        "state": STATE[operation.outcome],
        "money": _money(operation.amount_minor, operation.currency),
        "reason": operation.code.upper() if operation.code else None,
        "requestKey": operation.key,
    }
    if operation.kind == "payout":
        item["transferId"] = operation.charge_id
    else:
        item["paymentId"] = operation.charge_id
    if operation.kind in OWN_ID and operation.own_id:
        item[OWN_ID[operation.kind]] = operation.own_id
    return item


def render(operation: Operation) -> Response:
    body = {"data": data(operation), "meta": {"processedAt": operation.at}}
    if operation.outcome == "failed":
        return JSONResponse(body, status_code=404 if operation.code == "charge_not_found" else 422)
    return JSONResponse(body)


def events(operation: Operation) -> list[dict[str, Any]]:
    kinds = [EVENTS[(operation.kind, operation.outcome)]]
    if operation.kind == "authorize" and operation.capture and operation.outcome == "approved":
        kinds.append("CAPTURE_COMPLETE")
    occurred = operation.at.replace("+00:00", "Z")
    return [
        {"eventType": kind, "occurredAt": occurred, "payload": data(operation)} for kind in kinds
    ]


DIALECT = Dialect("globex", error, events, render)


def _amount(body: dict[str, Any]) -> tuple[int, str]:
    given = body.get("money")
    if not isinstance(given, dict):
        raise BadRequestError("money is required")
    currency, value = given.get("currency"), given.get("value")
    if not isinstance(currency, str) or not money.CURRENCY.match(currency):
        raise BadRequestError("money.currency must be ISO 4217")
    if not isinstance(value, str):
        raise BadRequestError("money.value must be a decimal string")
    amount = money.to_minor(value, currency)
    if not 0 < amount <= MAX_AMOUNT_MINOR:
        raise BadRequestError("money.value out of range")
    return amount, currency


def _card(body: dict[str, Any]) -> tuple[str, bool]:
    method, capture = body.get("paymentMethod"), body.get("autoCapture", False)
    token = method.get("token") if isinstance(method, dict) else None
    if not isinstance(token, str) or not isinstance(capture, bool):
        raise BadRequestError("paymentMethod.token and autoCapture (boolean) are required")
    return token, capture


def _bank(body: dict[str, Any]) -> str:
    destination = body.get("destination")
    bank = destination.get("bankToken") if isinstance(destination, dict) else None
    if not isinstance(bank, str) or not bank:
        raise BadRequestError("destination.bankToken is required")
    return bank


def _payment(found: Charge) -> dict[str, Any]:
    return {
        "data": {
            "paymentId": found.id,
            "money": _money(found.amount_minor, found.currency),
            "captured": _money(found.captured_minor, found.currency),
            "refunded": _money(found.refunded_minor, found.currency),
            "cancelled": found.voided,
        },
        "meta": {},
    }


WIRE = Wire(
    dialect=DIALECT,
    refusals=Refusals(
        unauthorized="unauthorised",
        bad_request="bad_request",
        unavailable="unavailable",
        card_invalid="card_number_invalid",
        request_unknown="request_unknown",
        request_unknown_message="no request with this key",
        charge_unknown="payment_unknown",
        charge_unknown_message="no such payment",
    ),
    key_header="globex-request-key",
    api_key=lambda request: request.headers.get("x-api-key"),
    pan=lambda body: str(body.get("cardNumber", "")),
    amount=_amount,
    card=_card,
    bank=_bank,
    settlement_day=lambda request: request.query_params.get("date", ""),
    token_body=lambda token: {"data": {"token": token}, "meta": {}},
    lookup_body=lambda found: {"data": data(found), "meta": {"processedAt": found.at}},
    charge_body=_payment,
    charge_prefix="gx",
    payout_prefix="gxt",
)


def routes(sim: Sim) -> list[Route]:
    api = Endpoints(sim, WIRE)
    return [
        Route(
            "/globex/hosted-fields/tokenize", api.guard(api.tokenize, public=True), methods=["POST"]
        ),
        Route("/globex/api/payments", api.guard(api.authorize), methods=["POST"]),
        Route("/globex/api/payments/{charge}/captures", api.guard(api.capture), methods=["POST"]),
        Route("/globex/api/payments/{charge}/cancellations", api.guard(api.void), methods=["POST"]),
        Route("/globex/api/payments/{charge}/refunds", api.guard(api.refund), methods=["POST"]),
        Route("/globex/api/payments/{charge}", api.guard(api.charge_status), methods=["GET"]),
        Route("/globex/api/transfers", api.guard(api.payout), methods=["POST"]),
        Route("/globex/api/requests/{key}", api.guard(api.lookup), methods=["GET"]),
        Route("/globex/api/reports/settlement", api.guard(api.settlement), methods=["GET"]),
    ]
