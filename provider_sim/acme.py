"""acme: a flat JSON API in integer minor units, upper-case statuses, Bearer keys.

    POST /acme/hosted-fields/tokens          {"pan"}                      -> {"token"}
    POST /acme/v1/charges                    {"card_token", "amount", "currency", "capture"}
    POST /acme/v1/charges/{id}/capture       {"amount", "currency"}
    POST /acme/v1/charges/{id}/void
    POST /acme/v1/charges/{id}/refunds       {"amount", "currency"}
    POST /acme/v1/payouts                    {"bank_token", "amount", "currency"}
    GET  /acme/v1/operations/{key}           what happened to the request sent with `key`
    GET  /acme/v1/charges/{id}               a charge's amounts
    GET  /acme/v1/settlements/{date}.csv     the day's settlement file
Statuses: AUTHORIZED, SETTLED, DECLINED, VOIDED, REFUNDED, PAID. A decline is HTTP 402.
"""

from __future__ import annotations

from datetime import datetime
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

STATUS = {
    ("capture", "approved"): "SETTLED",
    ("void", "approved"): "VOIDED",
    ("refund", "approved"): "REFUNDED",
    ("payout", "approved"): "PAID",
}
EVENTS = {
    "capture": "charge.settled",
    "void": "charge.voided",
    "refund": "refund.settled",
}


def _status(operation: Operation) -> str:
    if operation.outcome == "declined":
        return "DECLINED"
    if operation.kind == "authorize":
        return "SETTLED" if operation.capture else "AUTHORIZED"
    return STATUS[(operation.kind, operation.outcome)]


def error(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def view(operation: Operation) -> dict[str, Any]:
    if operation.outcome == "failed":
        return {
            "error": {"code": operation.code, "message": f"{operation.kind} refused"},
            "operation": operation.kind,
        }
    return {
        "id": operation.own_id,
        "object": operation.kind,
        "operation": operation.kind,
        "charge": operation.charge_id if operation.kind != "payout" else None,
        "status": _status(operation),
        "amount": operation.amount_minor,
        "currency": operation.currency,
        "decline_code": operation.code,
        "created": int(datetime.fromisoformat(operation.at).timestamp()),
    }


def render(operation: Operation) -> Response:
    body = view(operation)
    if operation.outcome == "failed":
        code = 404 if operation.code == "charge_not_found" else 409
        return JSONResponse(body, status_code=code)
    return JSONResponse(body, status_code=402 if operation.outcome == "declined" else 200)


def events(operation: Operation) -> list[dict[str, Any]]:
    created = int(datetime.fromisoformat(operation.at).timestamp())
    data = {
        "id": operation.own_id,
        "charge": operation.charge_id if operation.kind != "payout" else None,
        "amount": operation.amount_minor,
        "currency": operation.currency,
        "status": _status(operation),
        "idempotency_key": operation.key,
    }
    if operation.kind == "authorize":
        if operation.outcome == "declined":
            types = ["charge.declined"]
        else:
            types = ["charge.authorized", *(["charge.settled"] if operation.capture else [])]
    elif operation.kind == "payout":
        types = ["payout.paid" if operation.outcome == "approved" else "payout.declined"]
    else:
        types = [EVENTS[operation.kind]]
    return [{"type": kind, "created": created, "data": data} for kind in types]


DIALECT = Dialect("acme", error, events, render)


def _amount(body: dict[str, Any]) -> tuple[int, str]:
    amount, currency = body.get("amount"), body.get("currency")
    if (
        not isinstance(amount, int)
        or isinstance(amount, bool)
        or not 0 < amount <= MAX_AMOUNT_MINOR
    ):
        raise BadRequestError("amount must be a positive integer of minor units")
    if not isinstance(currency, str) or not money.CURRENCY.match(currency):
        raise BadRequestError("currency must be ISO 4217")
    return amount, currency


def routes(sim: Sim) -> list[Route]:
    engine = sim.engine

    def guard(handler: Any, *, public: bool = False) -> Any:
        async def endpoint(request: Request) -> Response:
            header = request.headers.get("authorization", "")
            if not public and not authorized(sim, "acme", header.removeprefix("Bearer ")):
                return error(401, "unauthorized", "bad API key")
            try:
                response: Response = await handler(request)
                return response
            except (BadRequestError, ValueError) as bad:
                return error(400, "invalid_request", str(bad))

        return endpoint

    async def tokenize(request: Request) -> Response:
        body = await json_body(request)
        if (failed := await read_fault(sim, "acme", "tokenize")) is not None:
            return error(failed, "temporarily_unavailable", "injected fault")
        token = engine.tokenize(str(body.get("pan", "")))
        if token is None:
            return error(422, "invalid_card_number", "card number fails the Luhn check")
        return JSONResponse({"token": token}, status_code=201)

    async def charge(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        token, capture = body.get("card_token"), body.get("capture", False)
        if not isinstance(token, str) or not isinstance(capture, bool):
            raise BadRequestError("card_token (string) and capture (boolean) are required")
        key = request.headers.get("idempotency-key")
        return await run(
            sim, DIALECT, operation="authorize", key=key,
            behaviour=engine.behaviour(token),
            process=lambda: engine.authorize(
                "acme", key or "", token=token, amount_minor=amount, currency=currency,
                capture=capture, id_prefix="ch",
            ),
        )  # fmt: skip

    async def capture(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        charge_id, key = request.path_params["charge"], request.headers.get("idempotency-key")
        return await run(
            sim, DIALECT, operation="capture", key=key,
            process=lambda: engine.capture(
                "acme", key or "", charge_id=charge_id, amount_minor=amount, currency=currency
            ),
        )  # fmt: skip

    async def void(request: Request) -> Response:
        charge_id, key = request.path_params["charge"], request.headers.get("idempotency-key")
        return await run(
            sim, DIALECT, operation="void", key=key,
            process=lambda: engine.void("acme", key or "", charge_id=charge_id),
        )  # fmt: skip

    async def refund(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        charge_id, key = request.path_params["charge"], request.headers.get("idempotency-key")
        return await run(
            sim, DIALECT, operation="refund", key=key,
            process=lambda: engine.refund(
                "acme", key or "", charge_id=charge_id, amount_minor=amount, currency=currency
            ),
        )  # fmt: skip

    async def payout(request: Request) -> Response:
        body = await json_body(request)
        amount, currency = _amount(body)
        bank = body.get("bank_token")
        if not isinstance(bank, str) or not bank:
            raise BadRequestError("bank_token is required")
        key = request.headers.get("idempotency-key")
        return await run(
            sim, DIALECT, operation="payout", key=key,
            process=lambda: engine.payout(
                "acme", key or "", bank_token=bank, amount_minor=amount, currency=currency,
                id_prefix="po",
            ),
        )  # fmt: skip

    async def operation(request: Request) -> Response:
        if (failed := await read_fault(sim, "acme", "lookup")) is not None:
            return error(failed, "temporarily_unavailable", "injected fault")
        found = engine.find("acme", request.path_params["key"])
        if found is None:
            return error(404, "not_found", "no request with this idempotency key")
        return JSONResponse(view(found))

    async def charge_status(request: Request) -> Response:
        found = engine.charge("acme", request.path_params["charge"])
        if found is None:
            return error(404, "not_found", "no such charge")
        return JSONResponse(
            {
                "id": found.id,
                "amount": found.amount_minor,
                "currency": found.currency,
                "captured": found.captured_minor,
                "refunded": found.refunded_minor,
                "voided": found.voided,
            }
        )

    async def settlement(request: Request) -> Response:
        day = settlement_day(request.path_params["day"])
        if (failed := await read_fault(sim, "acme", "settlement")) is not None:
            return error(failed, "temporarily_unavailable", "injected fault")
        data = settlement_file(engine, "acme", day, sim.plans.get(("acme", day), []))
        return Response(data, media_type="text/csv")

    return [
        Route("/acme/hosted-fields/tokens", guard(tokenize, public=True), methods=["POST"]),
        Route("/acme/v1/charges", guard(charge), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/capture", guard(capture), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/void", guard(void), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/refunds", guard(refund), methods=["POST"]),
        Route("/acme/v1/charges/{charge}", guard(charge_status), methods=["GET"]),
        Route("/acme/v1/payouts", guard(payout), methods=["POST"]),
        Route("/acme/v1/operations/{key}", guard(operation), methods=["GET"]),
        Route("/acme/v1/settlements/{day:str}.csv", guard(settlement), methods=["GET"]),
    ]
