"""The simulator's ASGI app: both providers, the fault API and the control API.

Control API (local only, no auth; the server binds to 127.0.0.1):
    GET    /_sim/health
    GET    /_sim/faults                         PUT/DELETE /_sim/faults/{provider}/{operation}
    DELETE /_sim/faults                         clear every fault
    POST   /_sim/seed                           {"seed": int}: repeatable fault draws
    GET    /_sim/webhooks                       what was sent and how it ended
    PUT    /_sim/webhooks                       {"target": url | null, "paused": bool}
    PUT    /_sim/settlements/{provider}/{date}  {"discrepancies": [...]} (see settlement.py)
    GET    /_sim/stats                          charge and operation counts per provider
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from provider_sim import acme, globex
from provider_sim.config import PROVIDERS, SimConfig
from provider_sim.engine import Engine
from provider_sim.faults import OPERATIONS, Fault, Faults
from provider_sim.flow import BadRequestError, Sim, json_body
from provider_sim.settlement import check_plan, settlement_day
from provider_sim.webhooks import WebhookSender


def _bad(message: str, status: int = 400) -> Response:
    return JSONResponse({"error": message}, status_code=status)


def control_routes(sim: Sim) -> list[Route]:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def faults(_: Request) -> Response:
        return JSONResponse(sim.faults.snapshot())

    async def set_fault(request: Request) -> Response:
        provider, operation = request.path_params["provider"], request.path_params["operation"]
        if provider not in PROVIDERS or operation not in OPERATIONS:
            return _bad(f"provider in {PROVIDERS}, operation in {OPERATIONS}", 404)
        if request.method == "DELETE":
            sim.faults.set(provider, operation, Fault())
            return JSONResponse(sim.faults.snapshot())
        try:
            sim.faults.set(provider, operation, Fault.parse(await json_body(request)))
        except (BadRequestError, ValueError, TypeError) as error:
            return _bad(str(error))
        return JSONResponse(sim.faults.snapshot())

    async def clear_faults(_: Request) -> Response:
        sim.faults.clear()
        return JSONResponse({})

    async def seed(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body.get("seed"), int):
            return _bad("seed must be an integer")
        sim.faults.reseed(body["seed"])
        return JSONResponse({"seed": body["seed"]})

    async def webhooks(request: Request) -> Response:
        if request.method == "PUT":
            body = await json_body(request)
            if "target" in body:
                target = body["target"]
                if target is not None and (
                    not isinstance(target, str) or urlsplit(target).scheme not in {"http", "https"}
                ):
                    return _bad("target must be an http(s) URL or null")
                sim.sender.target = target.rstrip("/") if target else None
            if "paused" in body:
                sim.sender.paused = bool(body["paused"])
        return JSONResponse(
            {
                "target": sim.sender.target,
                "paused": sim.sender.paused,
                "dropped": sim.sender.dropped,
                "deliveries": sim.sender.describe(),
            }
        )

    async def plan(request: Request) -> Response:
        provider = request.path_params["provider"]
        try:
            day = settlement_day(request.path_params["day"])
            body = await json_body(request)
            discrepancies = check_plan(body.get("discrepancies", []))
        except (BadRequestError, ValueError) as error:
            return _bad(str(error))
        if provider not in PROVIDERS:
            return _bad("unknown provider", 404)
        sim.plans[(provider, day)] = discrepancies
        return JSONResponse({"provider": provider, "date": day, "discrepancies": discrepancies})

    async def stats(_: Request) -> Response:
        result: dict[str, Any] = {}
        for provider in PROVIDERS:
            result[provider] = {
                "charges": sum(1 for name, _ in sim.engine.charges if name == provider),
                "operations": sum(1 for name, _ in sim.engine.operations if name == provider),
                "requests": {
                    operation: count
                    for (name, operation), count in sim.faults.requests.items()
                    if name == provider
                },
            }
        return JSONResponse(result)

    return [
        Route("/_sim/health", health, methods=["GET"]),
        Route("/_sim/faults", faults, methods=["GET"]),
        Route("/_sim/faults", clear_faults, methods=["DELETE"]),
        Route("/_sim/faults/{provider}/{operation}", set_fault, methods=["PUT", "DELETE"]),
        Route("/_sim/seed", seed, methods=["POST"]),
        Route("/_sim/webhooks", webhooks, methods=["GET", "PUT"]),
        Route("/_sim/settlements/{provider}/{day}", plan, methods=["PUT"]),
        Route("/_sim/stats", stats, methods=["GET"]),
    ]


def create_app(config: SimConfig | None = None) -> Starlette:
    config = config or SimConfig.from_env()
    sim = Sim(
        config=config,
        engine=Engine(max_records=config.max_records, state_file=config.state_file),
        faults=Faults(),
        sender=WebhookSender(
            dict(config.webhook_secrets),
            target=config.webhook_url,
            attempts=config.webhook_attempts,
            timeout_s=config.webhook_timeout_s,
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await sim.sender.start()
        try:
            yield
        finally:
            await sim.sender.stop()

    routes = [*control_routes(sim), *acme.routes(sim), *globex.routes(sim)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = sim
    return app
