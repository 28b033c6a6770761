"""The evidence service's ASGI app: `uvicorn evidence.asgi:create_app --factory --port 8081`.

A separate deployable with its own database, migrated at start. It shares the request
pipeline, OPA client and request-signature verifier with the API through `app.platform`,
and trusts the API only as token issuer (its JWKS URL), never calling it per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.platform.db import create_engine, session_factory
from app.platform.errors import DomainError
from app.platform.logging import configure_logging
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.openapi import build_document
from app.platform.request_auth import BearerAuthenticator, Rfc9421Verifier, TokenVerifier
from app.platform.settings import SettingsError
from app.platform.vault import Vault
from app.platform.web import (
    RequestIdMiddleware,
    Services,
    domain_error_handler,
    endpoint_routes,
    http_exception_handler,
    unhandled_error_handler,
)
from evidence import database, routes
from evidence.checkpointer import Checkpointer
from evidence.config import EvidenceSettings
from evidence.signing import TransitSigner

SERVICE_VERSION = "1.0.0"


def create_app(settings: EvidenceSettings | None = None) -> Starlette:
    try:
        settings = settings or EvidenceSettings.from_env()
    except SettingsError as error:
        raise SystemExit(f"invalid settings: {error}") from None
    platform = settings.platform
    configure_logging(platform.log_level)
    vault = Vault.login(platform.vault_addr, platform.vault_login)
    vault.ensure_engines()
    try:
        url = database.database_url(vault)
    except database.DatabaseNotConfiguredError as error:
        raise SystemExit(str(error)) from None
    database.upgrade(url)
    signer = TransitSigner(vault, settings.signing_key_name)
    signer.ensure_key()
    engine = create_engine(url, pool_size=platform.db_pool_size)
    sessions = session_factory(engine)
    opa = Opa(platform.opa_url, platform.opa_timeout_ms)
    checkpointer = Checkpointer(
        sessions,
        signer,
        settings.origin,
        settings.checkpoint_every_records,
        settings.checkpoint_interval_ms,
    )
    services = Services(
        sessions=sessions,
        authenticator=BearerAuthenticator(
            TokenVerifier(issuer=settings.issuer_url, jwks_url=settings.jwks_url)
        ),
        signatures=Rfc9421Verifier(public_base_url=settings.public_base_url, sessions=sessions),
        authorizer=OpaAuthorizer(opa),
        body_limit_bytes=settings.body_limit_bytes,
        idempotency_ttl_s=platform.idempotency_ttl_s,
        idempotency_stale_claim_s=platform.idempotency_stale_claim_s,
        extras={
            "evidence_settings": settings,
            "signer": signer,
            "checkpointer": checkpointer,
            "engine": engine,
        },
    )
    endpoints = routes.endpoints()
    openapi_document = build_document(
        "moneypath evidence service", SERVICE_VERSION, endpoints, _operational_paths()
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
        checkpointer.start()
        try:
            yield
        finally:
            await checkpointer.stop()
            await opa.close()
            await engine.dispose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *endpoint_routes(endpoints),
        ],
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
    def plain(operation_id: str, summary: str, codes: dict[str, str]) -> dict[str, Any]:
        return {
            "get": {
                "operationId": operation_id,
                "summary": summary,
                "security": [],
                "responses": {code: {"description": text_} for code, text_ in codes.items()},
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
