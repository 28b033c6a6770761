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

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provider_sim import money
from provider_sim.endpoints import Endpoints, Refusals, Wire
from provider_sim.engine import MAX_AMOUNT_MINOR, Charge, Operation
from provider_sim.flow import BadRequestError, Dialect, Sim

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


def _card(body: dict[str, Any]) -> tuple[str, bool]:
    token, capture = body.get("card_token"), body.get("capture", False)
    if not isinstance(token, str) or not isinstance(capture, bool):
        raise BadRequestError("card_token (string) and capture (boolean) are required")
    return token, capture


def _bank(body: dict[str, Any]) -> str:
    bank = body.get("bank_token")
    if not isinstance(bank, str) or not bank:
        raise BadRequestError("bank_token is required")
    return bank


def _charge(found: Charge) -> dict[str, Any]:
    return {
        "id": found.id,
        "amount": found.amount_minor,
        "currency": found.currency,
        "captured": found.captured_minor,
        "refunded": found.refunded_minor,
        "voided": found.voided,
    }


WIRE = Wire(
    dialect=DIALECT,
    refusals=Refusals(
        unauthorized="unauthorized",
        bad_request="invalid_request",
        unavailable="temporarily_unavailable",
        card_invalid="invalid_card_number",
        request_unknown="not_found",
        request_unknown_message="no request with this idempotency key",
        charge_unknown="not_found",
        charge_unknown_message="no such charge",
    ),
    key_header="idempotency-key",
    api_key=lambda request: request.headers.get("authorization", "").removeprefix("Bearer "),
    pan=lambda body: str(body.get("pan", "")),
    amount=_amount,
    card=_card,
    bank=_bank,
    settlement_day=lambda request: str(request.path_params["day"]),
    token_body=lambda token: {"token": token},
    lookup_body=view,
    charge_body=_charge,
    charge_prefix="ch",
    payout_prefix="po",
)


def routes(sim: Sim) -> list[Route]:
    api = Endpoints(sim, WIRE)
    return [
        Route("/acme/hosted-fields/tokens", api.guard(api.tokenize, public=True), methods=["POST"]),
        Route("/acme/v1/charges", api.guard(api.authorize), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/capture", api.guard(api.capture), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/void", api.guard(api.void), methods=["POST"]),
        Route("/acme/v1/charges/{charge}/refunds", api.guard(api.refund), methods=["POST"]),
        Route("/acme/v1/charges/{charge}", api.guard(api.charge_status), methods=["GET"]),
        Route("/acme/v1/payouts", api.guard(api.payout), methods=["POST"]),
        Route("/acme/v1/operations/{key}", api.guard(api.lookup), methods=["GET"]),
        Route("/acme/v1/settlements/{day:str}.csv", api.guard(api.settlement), methods=["GET"]),
    ]
