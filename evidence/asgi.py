"""The evidence service's ASGI app: `uvicorn evidence.asgi:create_app --factory --port 8081`.

A separate deployable with its own database, migrated at start. It shares the request
pipeline, OPA client and request-signature verifier with the API through `app.platform`,
and trusts the API only as token issuer (its JWKS URL), never calling it per request.
"""

from __future__ import annotations

from starlette.applications import Starlette

from app.platform.auth_limits import FailureLimiter
from app.platform.db import create_autocommit_engine, create_engine, session_factory
from app.platform.logging import configure_logging
from app.platform.opa import Opa, OpaAuthorizer
from app.platform.request_auth import BearerAuthenticator, Rfc9421Verifier, TokenVerifier
from app.platform.service_app import build_service_app
from app.platform.settings import SettingsError
from app.platform.vault import Vault
from evidence import database, endpoints
from evidence.activity import ClientActivity
from evidence.checkpointer import Checkpointer
from evidence.config import EvidenceSettings
from evidence.runtime import EvidenceServices
from evidence.signing import TransitSigner
from evidence.trust import SubmitterTrust

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
        identity_url = database.identity_database_url(vault)
    except database.DatabaseNotConfiguredError as error:
        raise SystemExit(str(error)) from None
    signer = TransitSigner(vault, settings.signing_key_name)
    signer.ensure_key()
    engine = create_engine(url, pool_size=platform.db_pool_size)
    sessions = session_factory(engine)
    # Single-statement claims (nonce, idempotency key) autocommit: see the API's asgi.py.
    autocommit_engine = create_autocommit_engine(url, pool_size=platform.db_pool_size)
    autocommit_sessions = session_factory(autocommit_engine)
    opa = Opa(platform.opa_url, platform.opa_timeout_ms)
    # Autocommit: one SELECT per request, no BEGIN/ROLLBACK round trips.
    identity_engine = create_autocommit_engine(identity_url, pool_size=platform.db_pool_size)
    activity = ClientActivity(session_factory(identity_engine))
    checkpointer = Checkpointer(
        sessions,
        signer,
        settings.origin,
        settings.checkpoint_every_records,
        settings.checkpoint_interval_ms,
    )
    services = EvidenceServices(
        sessions=sessions,
        autocommit_sessions=autocommit_sessions,
        failure_limiter=FailureLimiter(autocommit_sessions),
        authenticator=BearerAuthenticator(
            TokenVerifier(issuer=settings.issuer_url, jwks_url=settings.jwks_url),
            is_active=activity.is_active,
        ),
        signatures=Rfc9421Verifier(
            public_base_url=settings.public_base_url, sessions=autocommit_sessions
        ),
        authorizer=OpaAuthorizer(opa),
        body_limit_bytes=settings.body_limit_bytes,
        idempotency_ttl_s=platform.idempotency_ttl_s,
        idempotency_stale_claim_s=platform.idempotency_stale_claim_s,
        vault=vault,
        settings=settings,
        signer=signer,
        checkpointer=checkpointer,
        submitter_trust=SubmitterTrust(opa),
    )

    async def start_checkpointer() -> None:
        checkpointer.start()

    return build_service_app(
        title="moneypath evidence service",
        version=SERVICE_VERSION,
        services=services,
        endpoints=endpoints.endpoints(),
        engine=engine,
        other_engines=(autocommit_engine, identity_engine),
        opa=opa,
        vault=vault,
        on_start=start_checkpointer,
        on_stop=checkpointer.stop,
    )
