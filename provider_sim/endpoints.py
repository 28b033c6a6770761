"""What both simulated providers do per endpoint; each provider file keeps its wire format.

A provider describes its `Wire`: how it reads a request (keys, amounts, card and bank
tokens, the settlement day) and how it words an answer (refusal codes, bodies). The
handlers here do the rest in one order for both providers (faults, engine bookkeeping,
webhooks through `flow.run`), so what a provider *does* changes in one place while how it
*speaks* stays distinct, which is the point of simulating two.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from provider_sim.engine import Charge, Operation
from provider_sim.flow import BadRequestError, Dialect, Sim, authorized, json_body, read_fault, run
from provider_sim.settlement import settlement_day, settlement_file

Body = dict[str, Any]
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Refusals:
    """A provider's own words for the refusals the shared handlers make themselves."""

    unauthorized: str
    bad_request: str
    unavailable: str
    card_invalid: str
    request_unknown: str
    request_unknown_message: str
    charge_unknown: str
    charge_unknown_message: str


@dataclass(frozen=True)
class Wire:
    """One provider's wire format: what it reads from a request and how it answers."""

    dialect: Dialect
    refusals: Refusals
    key_header: str  # the idempotency key's header
    api_key: Callable[[Request], str | None]  # the API key the caller presented
    pan: Callable[[Body], str]
    amount: Callable[[Body], tuple[int, str]]  # (minor units, currency) or BadRequestError
    card: Callable[[Body], tuple[str, bool]]  # (card token, capture) or BadRequestError
    bank: Callable[[Body], str]  # bank token or BadRequestError
    settlement_day: Callable[[Request], str]  # the day as the caller wrote it
    token_body: Callable[[str], Body]
    lookup_body: Callable[[Operation], Body]
    charge_body: Callable[[Charge], Body]
    charge_prefix: str
    payout_prefix: str


class Endpoints:
    """The handlers of one provider; its `routes` give them the provider's own paths.

    A path that names a charge calls its parameter `charge`, whatever the provider calls it.
    """

    def __init__(self, sim: Sim, wire: Wire) -> None:
        self._sim = sim
        self._wire = wire
        self._provider = wire.dialect.provider
        self._error = wire.dialect.error

    def guard(self, handler: Handler, *, public: bool = False) -> Handler:
        """Checks the API key (unless public) and turns a bad request into a 400."""

        async def endpoint(request: Request) -> Response:
            presented = self._wire.api_key(request)
            if not public and not authorized(self._sim, self._provider, presented):
                return self._error(401, self._wire.refusals.unauthorized, "bad API key")
            try:
                return await handler(request)
            except (BadRequestError, ValueError) as bad:
                return self._error(400, self._wire.refusals.bad_request, str(bad))

        return endpoint

    def _key(self, request: Request) -> str | None:
        return request.headers.get(self._wire.key_header)

    async def _read_fault(self, operation: str) -> Response | None:
        failed = await read_fault(self._sim, self._provider, operation)
        if failed is None:
            return None
        return self._error(failed, self._wire.refusals.unavailable, "injected fault")

    async def tokenize(self, request: Request) -> Response:
        body = await json_body(request)
        if (failed := await self._read_fault("tokenize")) is not None:
            return failed
        token = self._sim.engine.tokenize(self._wire.pan(body))
        if token is None:
            return self._error(
                422, self._wire.refusals.card_invalid, "card number fails the Luhn check"
            )
        return JSONResponse(self._wire.token_body(token), status_code=201)

    async def authorize(self, request: Request) -> Response:
        body = await json_body(request)
        amount, currency = self._wire.amount(body)
        token, capture = self._wire.card(body)
        key, engine = self._key(request), self._sim.engine
        return await run(
            self._sim, self._wire.dialect, operation="authorize", key=key,
            behaviour=engine.behaviour(token),
            process=lambda: engine.authorize(
                self._provider, key or "", token=token, amount_minor=amount, currency=currency,
                capture=capture, id_prefix=self._wire.charge_prefix,
            ),
        )  # fmt: skip

    async def capture(self, request: Request) -> Response:
        return await self._move_money(request, "capture", self._sim.engine.capture)

    async def void(self, request: Request) -> Response:
        charge_id, key = request.path_params["charge"], self._key(request)
        return await run(
            self._sim, self._wire.dialect, operation="void", key=key,
            process=lambda: self._sim.engine.void(self._provider, key or "", charge_id=charge_id),
        )  # fmt: skip

    async def refund(self, request: Request) -> Response:
        return await self._move_money(request, "refund", self._sim.engine.refund)

    async def _move_money(
        self, request: Request, operation: str, act: Callable[..., Operation]
    ) -> Response:
        """A capture or refund: an amount against the path's charge."""
        amount, currency = self._wire.amount(await json_body(request))
        charge_id, key = request.path_params["charge"], self._key(request)
        return await run(
            self._sim, self._wire.dialect, operation=operation, key=key,
            process=lambda: act(
                self._provider, key or "", charge_id=charge_id, amount_minor=amount,
                currency=currency,
            ),
        )  # fmt: skip

    async def payout(self, request: Request) -> Response:
        body = await json_body(request)
        amount, currency = self._wire.amount(body)
        bank, key = self._wire.bank(body), self._key(request)
        return await run(
            self._sim, self._wire.dialect, operation="payout", key=key,
            process=lambda: self._sim.engine.payout(
                self._provider, key or "", bank_token=bank, amount_minor=amount,
                currency=currency, id_prefix=self._wire.payout_prefix,
            ),
        )  # fmt: skip

    async def lookup(self, request: Request) -> Response:
        """What happened to the request sent with the path's idempotency `key`."""
        if (failed := await self._read_fault("lookup")) is not None:
            return failed
        found = self._sim.engine.find(self._provider, request.path_params["key"])
        if found is None:
            refusals = self._wire.refusals
            return self._error(404, refusals.request_unknown, refusals.request_unknown_message)
        return JSONResponse(self._wire.lookup_body(found))

    async def charge_status(self, request: Request) -> Response:
        found = self._sim.engine.charge(self._provider, request.path_params["charge"])
        if found is None:
            refusals = self._wire.refusals
            return self._error(404, refusals.charge_unknown, refusals.charge_unknown_message)
        return JSONResponse(self._wire.charge_body(found))

    async def settlement(self, request: Request) -> Response:
        day = settlement_day(self._wire.settlement_day(request))
        if (failed := await self._read_fault("settlement")) is not None:
            return failed
        plan = self._sim.plans.get((self._provider, day), [])
        return Response(
            settlement_file(self._sim.engine, self._provider, day, plan), media_type="text/csv"
        )
