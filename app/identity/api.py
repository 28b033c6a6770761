"""The identity domain's public door: API clients, their keys, and the token machinery.

Other domains and the composition root use only what is defined or re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from app.identity import customers, domain, oauth, service, tokens
from app.identity.customers import (
    CustomerNotFoundError,
    InvalidKycTransitionError,
    KycState,
    RiskProfile,
    RotationReport,
)
from app.identity.domain import Client, ClientKey, CreatedClient, InvalidPublicKeyError
from app.identity.service import ClientNotFoundError
from app.platform.request_auth import TOKEN_AUDIENCE, BearerAuthenticator, TokenVerifier
from app.platform.vault import Vault
from app.platform.web import Principal

__all__ = [
    "KNOWN_SCOPES",
    "Client",
    "ClientKey",
    "ClientNotFoundError",
    "CreatedClient",
    "CustomerNotFoundError",
    "IdentityRuntime",
    "InvalidKycTransitionError",
    "InvalidPublicKeyError",
    "KycState",
    "RiskProfile",
    "RotationReport",
    "UnknownScopeError",
    "add_key",
    "create_client",
    "customer_kyc_state",
    "customer_risk_profile",
    "disable_client",
    "get_client",
    "openapi_paths",
    "plain_routes",
    "public_jwk_from_pem",
    "rotate_pii_key",
    "rotate_signing_key",
    "start_identity",
]

KNOWN_SCOPES = domain.KNOWN_SCOPES
UnknownScopeError = domain.UnknownScopeError


@dataclass(frozen=True, slots=True)
class IdentityRuntime:
    """What the composition root wires in: the token issuer and the request authenticator."""

    issuer: tokens.TokenIssuer
    verifier: TokenVerifier
    authenticator: BearerAuthenticator


def start_identity(
    vault: Vault,
    sessions: async_sessionmaker[AsyncSession],
    public_base_url: str,
    lookup_sessions: async_sessionmaker[AsyncSession] | None = None,
) -> IdentityRuntime:
    """Load the token signing keys from Vault (creating the first one) and build the
    authenticator. Raises VaultUnavailableError when Vault cannot be reached.

    `lookup_sessions` (autocommit ones, if given) serve the per-request `is_active` read:
    a single SELECT needs no BEGIN/ROLLBACK round trips."""
    tokens.ensure_signing_key(vault)
    vault.ensure_transit_key(customers.PII_KEY)
    issuer = tokens.TokenIssuer(vault, issuer=public_base_url, audience=TOKEN_AUDIENCE)
    issuer.load()
    verifier = TokenVerifier(
        issuer=public_base_url,
        jwks_source=issuer.jwks,
        on_unknown_kid=issuer.refresh_for_unknown_kid,
    )

    lookups = lookup_sessions or sessions

    async def is_active(principal: Principal) -> bool:
        async with lookups() as session:
            return await service.is_active(session, principal.client_id, principal.key_id)

    return IdentityRuntime(
        issuer=issuer,
        verifier=verifier,
        authenticator=BearerAuthenticator(verifier, is_active=is_active),
    )


async def create_client(
    session: AsyncSession,
    *,
    name: str,
    scopes: Sequence[str],
    public_jwk: Mapping[str, Any] | None = None,
    public_key_pem: str | None = None,
    owner: str | None = None,
) -> CreatedClient:
    """Create a client with one public key (PEM or JWK) in the caller's transaction.

    Raises UnknownScopeError, InvalidPublicKeyError, ValidationError (name).
    """
    if (public_jwk is None) == (public_key_pem is None):
        raise InvalidPublicKeyError("send exactly one of public_key_pem and public_jwk")
    jwk = (
        domain.public_jwk_from_pem(public_key_pem)
        if public_key_pem is not None
        else dict(public_jwk or {})
    )
    return await service.create_client(
        session, name=name, scopes=scopes, public_jwk=jwk, owner=owner
    )


async def add_key(
    session: AsyncSession,
    *,
    client_id: str,
    public_jwk: Mapping[str, Any],
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> str:
    """Register another public key for rotation; returns its key id.

    Raises ClientNotFoundError, InvalidPublicKeyError.
    """
    await service.get_client(session, client_id)
    return await service.add_key(
        session,
        client_id=client_id,
        public_jwk=public_jwk,
        not_before=not_before,
        not_after=not_after,
    )


async def get_client(session: AsyncSession, client_id: str) -> Client:
    """Raises ClientNotFoundError."""
    return await service.get_client(session, client_id)


async def disable_client(session: AsyncSession, client_id: str) -> Client:
    """Disable a client: its tokens are refused from the next request on.

    Raises ClientNotFoundError.
    """
    return await service.set_disabled(session, client_id, True)


def public_jwk_from_pem(pem: str) -> dict[str, str]:
    """Raises InvalidPublicKeyError."""
    return domain.public_jwk_from_pem(pem)


def rotate_signing_key(vault: Vault) -> str:
    """Rotate the token signing key in Vault; returns the new kid. Running APIs pick it
    up within their reload interval; tokens signed with the previous kid stay valid."""
    return tokens.rotate_signing_key(vault)


def plain_routes(runtime: IdentityRuntime) -> list[Route]:
    """The token endpoint and the JWKS (outside the JSON pipeline)."""
    return oauth.plain_routes(runtime.issuer)


def openapi_paths() -> dict[str, Any]:
    """OpenAPI entries for `plain_routes()`."""
    return oauth.openapi_paths()


async def customer_kyc_state(session: AsyncSession, customer_id: str) -> KycState:
    """The customer's owner and KYC status (payments need `verified`).

    Raises CustomerNotFoundError.
    """
    return await customers.kyc_state(session, customer_id)


async def customer_risk_profile(session: AsyncSession, customer_id: str) -> RiskProfile:
    """The customer's country, KYC status, whether a date of birth is on file, and when
    the customer was created: what risk rules use, and no PII.

    Raises CustomerNotFoundError.
    """
    return await customers.risk_profile(session, customer_id)


async def rotate_pii_key(
    vault: Vault, sessions: async_sessionmaker[AsyncSession]
) -> RotationReport:
    """Rotate the PII transit key, rewrap every stored ciphertext, then raise
    `min_decryption_version` so that old ciphertexts are refused. Raises VaultUnavailableError."""
    return await customers.rotate_pii_key(vault, sessions)
