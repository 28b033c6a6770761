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

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provider_sim import money
from provider_sim.engine import MAX_AMOUNT_MINOR, Operation
from provider_sim.flow import (
    BadRequestError,
    Dialect,
    Sim,
    authorized,
    json_body,
    read_fault,
    run,
)
from provider_sim.settlement import settlement_day, settlement_file

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


def routes(sim: Sim) -> list[Route]:
    engine = sim.engine

    def guard(handler: Any, *, public: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            if not public and not authorized(sim, "globex", request.headers.get("x-api-key")):
                return error(401, "unauthorised", "bad API key")
            try:
                response: Response = await handler(request)
                return response
            except (BadRequestError, ValueError) as bad:
                return error(400, "bad_request", str(bad))

        return endpoint

    def key_of(request: Request) -> str | None:
        return request.headers.get("globex-request-key")

    async def tokenize(request: Request) -> Response:
        body = await json_body(request)
        if (failed := await read_fault(sim, "globex", "tokenize")) is not None:
            return error(failed, "unavailable", "injected fault")
        token = engine.tokenize(str(body.get("cardNumber", "")))
        if token is None:
            return error(422, "card_number_invalid", "card number fails the Luhn check")
        return JSONResponse({"data": {"token": token}, "meta": {}}, status_code=201)

    async def payment(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        method, capture = body.get("paymentMethod"), body.get("autoCapture", False)
        token = method.get("token") if isinstance(method, dict) else None
        if not isinstance(token, str) or not isinstance(capture, bool):
            raise BadRequestError("paymentMethod.token and autoCapture (boolean) are required")
        key = key_of(request)
        return await run(
            sim, DIALECT, operation="authorize", key=key, behaviour=engine.behaviour(token),
            process=lambda: engine.authorize(
                "globex", key or "", token=token, amount_minor=amount, currency=currency,
                capture=capture, id_prefix="gx",
            ),
        )  # fmt: skip

    async def capture(request: Request) -> Response:
        amount, currency = _amount(await json_body(request))
        payment_id, key = request.path_params["payment"], key_of(request)
        return await run(
            sim, DIALECT, operation="capture", key=key,
            process=lambda: engine.capture(
                "globex", key or "", charge_id=payment_id, amount_minor=amount, currency=currency
            ),
        )  # fmt: skip

    async def cancel(request: Request) -> Response:
        payment_id, key = request.path_params["payment"], key_of(request)
        return await run(
            sim, DIALECT, operation="void", key=key,
            process=lambda: engine.void("globex", key or "", charge_id=payment_id),
        )  # fmt: skip

    async def refund(request: Request) -> Response:
        amount, currency = _amount(await json_body(request))
        payment_id, key = request.path_params["payment"], key_of(request)
        return await run(
            sim, DIALECT, operation="refund", key=key,
            process=lambda: engine.refund(
                "globex", key or "", charge_id=payment_id, amount_minor=amount, currency=currency
            ),
        )  # fmt: skip

    async def transfer(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        destination = body.get("destination")
        bank = destination.get("bankToken") if isinstance(destination, dict) else None
        if not isinstance(bank, str) or not bank:
            raise BadRequestError("destination.bankToken is required")
        key = key_of(request)
        return await run(
            sim, DIALECT, operation="payout", key=key,
            process=lambda: engine.payout(
                "globex", key or "", bank_token=bank, amount_minor=amount, currency=currency,
                id_prefix="gxt",
            ),
        )  # fmt: skip

    async def request_status(request: Request) -> Response:
        if (failed := await read_fault(sim, "globex", "lookup")) is not None:
            return error(failed, "unavailable", "injected fault")
        found = engine.find("globex", request.path_params["key"])
        if found is None:
            return error(404, "request_unknown", "no request with this key")
        return JSONResponse({"data": data(found), "meta": {"processedAt": found.at}})

    async def payment_status(request: Request) -> Response:
        found = engine.charge("globex", request.path_params["payment"])
        if found is None:
            return error(404, "payment_unknown", "no such payment")
        return JSONResponse(
            {
                "data": {
                    "paymentId": found.id,
                    "money": _money(found.amount_minor, found.currency),
                    "captured": _money(found.captured_minor, found.currency),
                    "refunded": _money(found.refunded_minor, found.currency),
                    "cancelled": found.voided,
                },
                "meta": {},
            }
        )

    async def settlement(request: Request) -> Response:
        day = settlement_day(request.query_params.get("date", ""))
        if (failed := await read_fault(sim, "globex", "settlement")) is not None:
            return error(failed, "unavailable", "injected fault")
        data = settlement_file(engine, "globex", day, sim.plans.get(("globex", day), []))
        return Response(data, media_type="text/csv")

    return [
        Route("/globex/hosted-fields/tokenize", guard(tokenize, public=True), methods=["POST"]),
        Route("/globex/api/payments", guard(payment), methods=["POST"]),
        Route("/globex/api/payments/{payment}/captures", guard(capture), methods=["POST"]),
        Route("/globex/api/payments/{payment}/cancellations", guard(cancel), methods=["POST"]),
        Route("/globex/api/payments/{payment}/refunds", guard(refund), methods=["POST"]),
        Route("/globex/api/payments/{payment}", guard(payment_status), methods=["GET"]),
        Route("/globex/api/transfers", guard(transfer), methods=["POST"]),
        Route("/globex/api/requests/{key}", guard(request_status), methods=["GET"]),
        Route("/globex/api/reports/settlement", guard(settlement), methods=["GET"]),
    ]
