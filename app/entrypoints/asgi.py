"""The API's ASGI application: `uvicorn app.entrypoints.asgi:create_app --factory`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.entrypoints.bootstrap import DATABASE_SECRET
from app.identity import api as identity_api
from app.ledger import routes as ledger_routes
from app.platform.db import create_engine, session_factory
from app.platform.errors import DomainError
from app.platform.logging import configure_logging
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.openapi import build_document
from app.platform.request_auth import Rfc9421Verifier
from app.platform.settings import Settings, SettingsError
from app.platform.vault import Vault
from app.platform.web import (
    Endpoint,
    RequestIdMiddleware,
    Services,
    domain_error_handler,
    endpoint_routes,
    http_exception_handler,
    unhandled_error_handler,
)

log = structlog.get_logger("moneypath.app")
API_VERSION = "1.0.0"


def all_endpoints() -> list[Endpoint]:
    """Every `/v1` endpoint of every domain, in one list: routing and OpenAPI share it."""
    return [*identity_api.endpoints(), *ledger_routes.endpoints()]


def create_app(settings: Settings | None = None) -> Starlette:
    try:
        settings = settings or Settings.from_env()
    except SettingsError as error:
        raise SystemExit(f"invalid settings: {error}") from None
    configure_logging(settings.log_level)
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    vault.ensure_engines()
    secret = vault.read_secret(DATABASE_SECRET)
    if secret is None or "url" not in secret:
        raise SystemExit(f"Vault has no kv/{DATABASE_SECRET}: run `moneypath bootstrap` first")
    engine = create_engine(str(secret["url"]), pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    opa = Opa(settings.opa_url, settings.opa_timeout_ms)
    identity = identity_api.start_identity(vault, sessions, settings.public_base_url)
    services = Services(
        sessions=sessions,
        authenticator=identity.authenticator,
        signatures=Rfc9421Verifier(public_base_url=settings.public_base_url, sessions=sessions),
        authorizer=OpaAuthorizer(opa),
        body_limit_bytes=settings.request_body_limit_bytes,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        idempotency_stale_claim_s=settings.idempotency_stale_claim_s,
        extras={
            "settings": settings,
            "vault": vault,
            "opa": opa,
            "engine": engine,
            "token_issuer": identity.issuer,
        },
    )
    endpoints = all_endpoints()
    openapi_document = build_document(
        "moneypath API",
        API_VERSION,
        endpoints,
        {**_operational_paths(), **identity_api.openapi_paths()},
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["db"] = "ok"
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            checks["db"] = "down"
        checks["opa"] = "ok" if await opa.healthy() else "down"
        checks["vault"] = "ok" if await vault.ahealth() else "down"
        down = [name for name, state in checks.items() if state != "ok"]
        body: dict[str, Any] = {"status": "ready" if not down else "unavailable", "checks": checks}
        if down:
            body["down"] = down
        return JSONResponse(body, status_code=200 if not down else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await opa.close()
        await engine.dispose()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *identity_api.plain_routes(),
        *endpoint_routes(endpoints),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_exception_handler,
            DomainError: domain_error_handler,
            Exception: unhandled_error_handler,
        },
    )
    app.add_middleware(RequestIdMiddleware)
    app.state.services = services
    app.state.openapi = openapi_document
    return app


def _operational_paths() -> dict[str, Any]:
    def plain(summary: str, codes: dict[str, str]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": summary.lower().replace(" ", "_"),
                "summary": summary,
                "security": [],
                "responses": {code: {"description": text_} for code, text_ in codes.items()},
            }
        }

    return {
        "/healthz": plain("Liveness", {"200": "alive"}),
        "/readyz": plain("Readiness", {"200": "db, opa and vault reachable", "503": "one is down"}),
        "/metrics": plain("Prometheus metrics", {"200": "metrics in text format"}),
        "/openapi.json": plain("This document", {"200": "OpenAPI 3.1"}),
    }
