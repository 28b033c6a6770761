"""The API's ASGI application: `uvicorn app.entrypoints.asgi:create_app --factory`."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from starlette.applications import Starlette

from app.domains import DOMAINS, ROUTES_MODULE
from app.entrypoints import anchors, backlogs
from app.entrypoints.bootstrap import DATABASE_SECRET
from app.identity import api as identity_api
from app.payments import api as payments_api
from app.platform.auth_limits import FailureLimiter
from app.platform.cost_model import CostModel
from app.platform.db import create_autocommit_engine, create_engine, session_factory
from app.platform.logging import configure_logging
from app.platform.metrics import configure_cost_model
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.request_auth import Rfc9421Verifier
from app.platform.request_auth.admission import Admission
from app.platform.service_app import build_service_app
from app.platform.settings import Settings, SettingsError
from app.platform.vault import DatabaseNotConfiguredError, Vault
from app.platform.web import Endpoint, Services
from app.providers import api as providers_api

API_VERSION = "1.0.0"


@dataclass(slots=True, kw_only=True)
class ApiServices(Services):
    """The API's services: the pipeline's, plus the identity runtime (token issuer)."""

    identity: identity_api.IdentityRuntime
    providers: providers_api.ProviderClients
    payments: payments_api.Runtime
    # verify's reader of the chain head anchored in the evidence log (ledger.verify_routes'
    # AnchorSource); None when no anchor client is registered.
    ledger_anchors: anchors.EvidenceAnchors | None = None
    # Reconciliation's evidence client: on-demand runs write their `recon.run` record
    # at once (None: the worker writes it).
    recon_evidence: anchors.EvidenceClient | None = None


def all_endpoints() -> list[Endpoint]:
    """Every `/v1` endpoint of every domain, in one list: routing and OpenAPI share it.

    Each domain named in app/domains.py that has a `routes.py` is mounted the same way,
    through its `routes.endpoints()`."""
    endpoints: list[Endpoint] = []
    for name in DOMAINS:
        module = f"app.{name}.{ROUTES_MODULE}"
        if importlib.util.find_spec(module) is not None:
            endpoints.extend(importlib.import_module(module).endpoints())
    return endpoints


def _evidence_client(settings: Settings, vault: Vault) -> anchors.EvidenceClient | None:
    """verify's client of the evidence service; None when no anchor client exists."""
    credentials = anchors.credentials_from_vault(vault)
    if credentials is None:
        return None
    return anchors.evidence_client(
        credentials, evidence_url=settings.evidence_url, issuer_url=settings.public_base_url
    )


def create_app(
    settings: Settings | None = None,
    provider_settings: providers_api.ProviderSettings | None = None,
) -> Starlette:
    try:
        settings = settings or Settings.from_env()
        provider_settings = provider_settings or providers_api.ProviderSettings.from_env()
    except SettingsError as error:
        raise SystemExit(f"invalid settings: {error}") from None
    configure_logging(settings.log_level)
    configure_cost_model(
        CostModel.from_file(settings.cost_model_file) if settings.cost_model_file else CostModel()
    )
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    vault.ensure_engines()
    try:
        database_url = vault.database_url(DATABASE_SECRET)
    except DatabaseNotConfiguredError as error:
        raise SystemExit(str(error)) from None
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    sessions = session_factory(engine)
    # Single-statement claims and lookups (nonce, idempotency key, is_active) autocommit.
    autocommit_engine = create_autocommit_engine(database_url, pool_size=settings.db_pool_size)
    autocommit_sessions = session_factory(autocommit_engine)
    opa = Opa(settings.opa_url, settings.opa_timeout_ms)
    try:
        provider_secrets = providers_api.read_provider_secrets(vault)
    except SettingsError as error:
        raise SystemExit(str(error)) from None
    providers = providers_api.ProviderClients(provider_settings, provider_secrets)
    identity = identity_api.start_identity(
        vault, sessions, settings.public_base_url, lookup_sessions=autocommit_sessions
    )
    evidence = _evidence_client(settings, vault)
    recon_evidence = anchors.recon_evidence_client(
        vault, evidence_url=settings.evidence_url, issuer_url=settings.public_base_url
    )
    services = ApiServices(
        sessions=sessions,
        autocommit_sessions=autocommit_sessions,
        failure_limiter=FailureLimiter(autocommit_sessions),
        authenticator=identity.authenticator,
        signatures=Rfc9421Verifier(
            public_base_url=settings.public_base_url,
            sessions=autocommit_sessions,
            # is_active, the nonce and the Idempotency-Key claim in one statement.
            admission=Admission(autocommit_engine, identity_api.ACTIVE_EXPRESSION),
        ),
        authorizer=OpaAuthorizer(opa),
        body_limit_bytes=settings.request_body_limit_bytes,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        idempotency_stale_claim_s=settings.idempotency_stale_claim_s,
        vault=vault,
        identity=identity,
        providers=providers,
        payments=payments_api.start_payments(
            sessions, providers, vault=vault, opa=opa, risk_timeout_ms=settings.risk_timeout_ms
        ),
        ledger_anchors=anchors.EvidenceAnchors(evidence) if evidence is not None else None,
        recon_evidence=recon_evidence,
    )

    async def stop() -> None:
        await providers.aclose()
        if evidence is not None:
            await evidence.aclose()
        if recon_evidence is not None:
            await recon_evidence.aclose()

    return build_service_app(
        title="moneypath API",
        version=API_VERSION,
        services=services,
        endpoints=all_endpoints(),
        engine=engine,
        other_engines=(autocommit_engine,),
        opa=opa,
        vault=vault,
        extra_routes=[*identity_api.plain_routes(identity), *payments_api.plain_routes()],
        extra_paths={**identity_api.openapi_paths(), **payments_api.openapi_paths()},
        on_stop=stop,
        on_scrape=lambda: backlogs.sample(sessions),
    )
