"""Assembles a service's Starlette app: operational routes, the `/v1` pipeline, errors.

The API and the evidence service are built the same way, so liveness, readiness,
metrics, the served OpenAPI document and error rendering behave identically in both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.platform.db_outage import database_error_handler
from app.platform.errors import DomainError
from app.platform.instrumentation import OutcomeMetricsMiddleware, instrument
from app.platform.opa import Opa
from app.platform.openapi import build_document
from app.platform.tracing import configure_tracing, instrument_app
from app.platform.vault import Vault
from app.platform.web import (
    Endpoint,
    RequestIdMiddleware,
    Services,
    domain_error_handler,
    endpoint_routes,
    http_exception_handler,
    route_exact_paths_first,
    unhandled_error_handler,
)

Hook = Callable[[], Awaitable[None]]
READINESS_DB_TIMEOUT_S = 2.0
SCRAPE_SAMPLE_TIMEOUT_S = 1.0


async def readiness(engine: AsyncEngine, opa: Opa, vault: Vault) -> tuple[int, dict[str, Any]]:
    """Check the database, OPA and Vault; 503 names whichever is down."""
    checks: dict[str, str] = {}

    async def ping() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        # Bounded: a probe must answer before the orchestrator's own probe timeout.
        await asyncio.wait_for(ping(), READINESS_DB_TIMEOUT_S)
        checks["db"] = "ok"
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        checks["db"] = "down"
    checks["opa"] = "ok" if await opa.healthy() else "down"
    checks["vault"] = "ok" if await vault.ahealth() else "down"
    down = [name for name, state in checks.items() if state != "ok"]
    body: dict[str, Any] = {"status": "ready" if not down else "unavailable", "checks": checks}
    if down:
        body["down"] = down
    return (200 if not down else 503), body


def operational_paths() -> dict[str, Any]:
    """OpenAPI entries for the unauthenticated operational endpoints."""

    def plain(operation_id: str, summary: str, codes: dict[str, str]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "security": [],
                "responses": {code: {"description": words} for code, words in codes.items()},
            }
        }

    return {
        "/healthz": plain("healthz", "Liveness", {"200": "alive"}),
        "/readyz": plain(
            "readyz", "Readiness", {"200": "db, opa and vault reachable", "503": "one is down"}
        ),
        "/metrics": plain("metrics", "Prometheus metrics", {"200": "metrics in text format"}),
        "/openapi.json": plain("openapi", "This document", {"200": "OpenAPI 3.1"}),
    }


def metrics_handler(on_scrape: Hook | None) -> Callable[[Request], Awaitable[Response]]:
    """`GET /metrics` of this process's registry (the API's, the evidence service's, the
    worker's). Gauges read from the database (outbox depth) are sampled by `on_scrape`
    when scraped; a failed or slow sample keeps the last values rather than failing the
    scrape, since the counters are still worth having while the database is away."""

    async def metrics(_: Request) -> Response:
        if on_scrape is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(on_scrape(), SCRAPE_SAMPLE_TIMEOUT_S)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return metrics


def build_service_app(
    *,
    title: str,
    version: str,
    services: Services,
    endpoints: Sequence[Endpoint],
    engine: AsyncEngine,
    opa: Opa,
    vault: Vault,
    extra_routes: Sequence[BaseRoute] = (),
    extra_paths: dict[str, Any] | None = None,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    other_engines: Sequence[AsyncEngine] = (),
    on_scrape: Hook | None = None,
) -> Starlette:
    configure_tracing(title)
    openapi_document = build_document(
        title, version, endpoints, {**operational_paths(), **(extra_paths or {})}
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        status, body = await readiness(engine, opa, vault)
        return JSONResponse(body, status_code=status)

    metrics = metrics_handler(on_scrape)

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if on_start is not None:
            await on_start()
        try:
            yield
        finally:
            if on_stop is not None:
                await on_stop()
            await opa.close()
            await engine.dispose()
            for other in other_engines:
                await other.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *extra_routes,
            *endpoint_routes(endpoints),
        ],
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_exception_handler,
            DomainError: domain_error_handler,
            SQLAlchemyError: database_error_handler,
            Exception: unhandled_error_handler,
        },
    )
    route_exact_paths_first(app.router)
    app.add_middleware(OutcomeMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    instrument(services)
    # Outermost, so the server span covers the other middleware and the exception handlers.
    instrument_app(app, [engine, *other_engines])
    app.state.services = services
    app.state.openapi = openapi_document
    return app
