"""What a domain declares about a `/v1` operation, and what its handler is given.

These are plain data types and protocols: the pipeline (`pipeline.py`) reads them, the
OpenAPI builder reads them, and nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.platform import idempotency
from app.platform.auth_limits import FailureLimiter
from app.platform.errors import DomainError, InvariantViolation
from app.platform.opa import Decision
from app.platform.vault import Vault

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API client, its granted scopes and the key its token binds."""

    client_id: str
    scopes: frozenset[str]
    key_id: str | None = None
    # The public JWK the token binds (RFC 7800 `cnf.jwk`); requests must be signed with it.
    key_jwk: Mapping[str, Any] | None = None


class Authenticator(Protocol):
    async def authenticate(self, request: Request, *, check_active: bool = True) -> Principal:
        """Return the caller or raise UnauthorizedError (401). With `check_active=False`
        the caller promises to check that the client is still active itself."""
        ...


class SignatureVerifier(Protocol):
    @property
    def checks_active(self) -> bool:
        """True when `verify` also checks that the client is active (one statement with
        the nonce and the early Idempotency-Key claim)."""
        ...

    async def verify(
        self,
        request: Request,
        body: bytes,
        principal: Principal | None,
        claim: idempotency.ClaimRequest | None = None,
    ) -> idempotency.EarlyClaim:
        """Check the RFC 9421 signature and nonce, or raise a 401 DomainError; claim
        `claim` with the nonce if the verifier can (else it is left to the pipeline)."""
        ...


class Authorizer(Protocol):
    async def decide(
        self, principal: Principal | None, action: str, resource: Mapping[str, Any]
    ) -> Decision:
        """Ask the policy engine; raise DependencyUnavailableError when it cannot answer."""
        ...


@dataclass(slots=True, kw_only=True)
class Services:
    """What the pipeline and the handlers need from the composition root.

    Stored on `app.state.services`. A service whose handlers need more (the evidence
    service's signer, say) subclasses this with typed fields of its own.
    """

    sessions: async_sessionmaker[AsyncSession]
    authenticator: Authenticator
    signatures: SignatureVerifier
    authorizer: Authorizer
    vault: Vault
    body_limit_bytes: int
    idempotency_ttl_s: int
    idempotency_stale_claim_s: int
    # Sessions on db.create_autocommit_engine: one round trip per statement and no WAL
    # flush wait, for the idempotency claim's fast path only (never for an effect).
    autocommit_sessions: async_sessionmaker[AsyncSession] | None = None
    # Bounds failed authentications per client id and source address (429 rate_limited).
    failure_limiter: FailureLimiter | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """Everything a handler may use about the request, already checked."""

    request: Request
    principal: Principal | None
    body: dict[str, Any]
    path: Mapping[str, str]
    query: Mapping[str, str]
    request_id: str
    decision_id: str | None
    services: Services

    @property
    def caller(self) -> Principal:
        """The authenticated caller, for handlers of endpoints that require a token."""
        if self.principal is None:
            raise InvariantViolation(
                "authenticated_call", "the handler needs a caller but the endpoint has none"
            )
        return self.principal


@dataclass(frozen=True, slots=True)
class Result:
    status: int
    body: Any
    resource_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # What an idempotent replay answers, when it must differ from `body`: a secret shown
    # once (a new client's secret) is neither stored with the key nor replayed.
    replay_body: Any = None


Handler = Callable[[Call, AsyncSession], Awaitable[Result]]
OwnerLookup = Callable[[AsyncSession, str], Awaitable[str | None]]
# A further policy question about what the raw body asks for (the evidence service: may
# this writer append this record type?). It runs in the policy stage, after the endpoint's
# own decision allowed the call and before the body is validated, so that API.md's order
# of checks holds: 403 before 422. Raises ForbiddenError; a body it cannot read is left to
# validation.
Admission = Callable[[Principal, bytes, Services], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A declared `/v1` operation: the route, its policy inputs and its contract."""

    method: str
    path: str
    handler: Handler
    action: str
    resource_type: str
    summary: str
    scopes: tuple[str, ...]
    success_status: int = 200
    request_schema: dict[str, Any] | None = None
    response_schema: dict[str, Any] | None = None
    query_parameters: tuple[dict[str, Any], ...] = ()
    idempotent: bool = False
    authenticated: bool = True
    signed: bool | None = None  # None: signed whenever the method changes state
    # The business refusals the handler may raise; the pipeline's own (401, 403, 422, ...)
    # follow from the flags above. OpenAPI lists the codes of both.
    errors: tuple[type[DomainError], ...] = ()
    owner_of: OwnerLookup | None = None
    admit: Admission | None = None
    tag: str = "default"
    audit_reads: bool = False  # reads are audited only where a control demands it
    body_limit_bytes: int | None = None  # None: the service-wide limit (settings)

    @property
    def audited(self) -> bool:
        return self.method in MUTATING_METHODS or self.audit_reads

    @property
    def needs_signature(self) -> bool:
        if self.signed is not None:
            return self.signed
        return self.authenticated and self.method in MUTATING_METHODS
