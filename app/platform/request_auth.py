"""The one verifier of access tokens and RFC 9421 request signatures, shared by every service.

The API and the evidence service both import this module (the evidence service may import
only `app.platform`), so there is exactly one implementation of DESIGN.md's security
profile:

- `TokenVerifier` checks an EdDSA access token with PyJWT against a JWKS that is either
  held locally (the API, which issues the tokens) or fetched from the issuer's JWKS URL
  with a timeout and a bounded cache (the evidence service).
- `BearerAuthenticator` turns `Authorization: Bearer` into a `Principal` that carries the
  key the token binds (RFC 7800 `cnf`).
- `Rfc9421Verifier` checks the HTTP Message Signature with the `http-message-signatures`
  library, the RFC 9530 `Content-Digest`, the freshness window and the single use of each
  `(keyid, nonce)` pair.

Every refusal is a 401 `DomainError` with its own code; the web pipeline counts it in a
metric and writes it to the audit log.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf
import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    ContentDigest,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from app.platform.errors import UnauthorizedError
from app.platform.web import Principal

log = structlog.get_logger("moneypath.auth")

# Every resource server of the platform (the API, the evidence service) accepts this audience.
TOKEN_AUDIENCE = "moneypath"  # noqa: S105 - an audience name
TOKEN_ALGORITHM = "EdDSA"  # noqa: S105 - an algorithm name
MAX_TOKEN_LIFETIME_S = 300
MAX_TOKEN_LENGTH = 4096
TOKEN_LEEWAY_S = 5

SIGNATURE_LABEL = "sig1"
SIGNATURE_ALGORITHM = "ed25519"
CREATED_PAST_WINDOW_S = 300
CREATED_FUTURE_WINDOW_S = 30
NONCE_TTL_S = 600
NONCE_CLEANUP_INTERVAL_S = 30
NONCE_CLEANUP_BATCH = 1000
MAX_SIGNATURE_HEADER_LENGTH = 4096
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_ALLOWED_PARAMETERS = frozenset({"created", "expires", "keyid", "nonce", "alg", "tag"})

JWKS_FETCH_TIMEOUT_S = 2.0
JWKS_CACHE_TTL_S = 300
JWKS_MIN_REFRESH_INTERVAL_S = 10
JWKS_MAX_KEYS = 16


# ---- errors (API.md "Auth on /v1/*") ------------------------------------------------------


class InvalidTokenError(UnauthorizedError):
    """Missing, malformed, expired or otherwise unacceptable access token."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class SignatureRequiredError(UnauthorizedError):
    code = "signature_required"
    title = "Signature required"


class InvalidSignatureError(UnauthorizedError):
    code = "invalid_signature"
    title = "Invalid signature"


class StaleRequestError(UnauthorizedError):
    code = "stale_request"
    title = "Stale request"


class DigestMismatchError(UnauthorizedError):
    code = "digest_mismatch"
    title = "Content-Digest mismatch"


class ReplayedRequestError(UnauthorizedError):
    code = "replayed_request"
    title = "Replayed request"


class KeyNotBoundError(UnauthorizedError):
    code = "key_not_bound"
    title = "Key not bound to the token"


# ---- keys ---------------------------------------------------------------------------------


def ed25519_public_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """Load an Ed25519 public JWK (OKP). Raises ValueError for anything else."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        raise ValueError("expected a public Ed25519 JWK (kty OKP, crv Ed25519)")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=TOKEN_ALGORITHM).key
    except jwt.PyJWTError as error:
        raise ValueError(f"not a usable JWK: {type(error).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("expected a public Ed25519 JWK")
    return key


def _keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    keys: dict[str, Ed25519PublicKey] = {}
    listed = jwks.get("keys")
    if not isinstance(listed, list):
        return keys
    for entry in listed[:JWKS_MAX_KEYS]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
            continue
        try:
            keys[entry["kid"]] = ed25519_public_key(entry)
        except ValueError:
            continue
    return keys


class RemoteJwks:
    """The issuer's JWKS fetched over HTTP, cached, and refetched on an unknown `kid`.

    Refetches are rate-limited, so a flood of tokens with made-up `kid`s cannot turn into
    a flood of requests to the issuer.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = JWKS_FETCH_TIMEOUT_S,
        cache_ttl_s: float = JWKS_CACHE_TTL_S,
        min_refresh_interval_s: float = JWKS_MIN_REFRESH_INTERVAL_S,
    ) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._cache_ttl_s = cache_ttl_s
        self._min_refresh_interval_s = min_refresh_interval_s
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                response = await client.get(self._url)
            document = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            document = None
        # A failed fetch still counts towards the rate limit, so a down issuer is not hammered.
        self._fetched_at = time.monotonic()
        if isinstance(document, Mapping):
            self._keys = _keys_by_kid(document)
        else:
            log.warning("jwks_fetch_failed", url=self._url)

    async def key(self, kid: str) -> Ed25519PublicKey | None:
        now = time.monotonic()
        fresh = now - self._fetched_at < self._cache_ttl_s
        if kid in self._keys and fresh:
            return self._keys[kid]
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self._min_refresh_interval_s or not fresh:
                await self._fetch()
        return self._keys.get(kid)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    client_id: str
    scopes: frozenset[str]
    key_id: str
    key_jwk: Mapping[str, Any]
    token_id: str
    expires_at: int


class TokenVerifier:
    """Checks access tokens: EdDSA signature by a known `kid`, iss, aud, exp, iat, cnf.

    Give exactly one key source: `jwks` (a fixed JWKS dict), `jwks_source` (a callable
    returning the current JWKS, for an issuer that rotates its own keys) or `jwks_url`.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str = TOKEN_AUDIENCE,
        jwks: Mapping[str, Any] | None = None,
        jwks_source: Callable[[], Mapping[str, Any]] | None = None,
        on_unknown_kid: Callable[[], Awaitable[None]] | None = None,
        jwks_url: str | None = None,
        jwks_timeout_s: float = JWKS_FETCH_TIMEOUT_S,
        jwks_cache_ttl_s: float = JWKS_CACHE_TTL_S,
        max_lifetime_s: int = MAX_TOKEN_LIFETIME_S,
        leeway_s: int = TOKEN_LEEWAY_S,
    ) -> None:
        if sum(source is not None for source in (jwks, jwks_source, jwks_url)) != 1:
            raise ValueError("give exactly one of jwks, jwks_source, jwks_url")
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime_s = max_lifetime_s
        self._leeway_s = leeway_s
        self._static = _keys_by_kid(jwks) if jwks is not None else None
        self._source = jwks_source
        # With `jwks_source`: called once when a token names a kid we do not know, so a
        # key rotated in by another process is picked up at once (the callee rate-limits).
        self._on_unknown_kid = on_unknown_kid
        self._source_seen: Mapping[str, Any] | None = None
        self._source_keys: dict[str, Ed25519PublicKey] = {}
        self._remote = (
            RemoteJwks(jwks_url, timeout_s=jwks_timeout_s, cache_ttl_s=jwks_cache_ttl_s)
            if jwks_url is not None
            else None
        )

    async def _key(self, kid: str) -> Ed25519PublicKey | None:
        if self._static is not None:
            return self._static.get(kid)
        if self._source is not None:
            key = self._source_key(kid)
            if key is None and self._on_unknown_kid is not None:
                await self._on_unknown_kid()
                key = self._source_key(kid)
            return key
        assert self._remote is not None
        return await self._remote.key(kid)

    def _source_key(self, kid: str) -> Ed25519PublicKey | None:
        assert self._source is not None
        current = self._source()
        if current is not self._source_seen:
            self._source_keys = _keys_by_kid(current)
            self._source_seen = current
        return self._source_keys.get(kid)

    async def verify(self, token: str) -> VerifiedToken:
        """Verify `token` and return its claims. Raises InvalidTokenError."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("the access token is missing or too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidTokenError("the access token is malformed") from None
        kid = header.get("kid")
        if header.get("alg") != TOKEN_ALGORITHM or not isinstance(kid, str):
            raise InvalidTokenError("the access token must be EdDSA-signed and name its kid")
        key = await self._key(kid)
        if key is None:
            raise InvalidTokenError("the access token was signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[TOKEN_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti", "cnf"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidTokenError("the access token has expired") from None
        except jwt.PyJWTError as error:
            raise InvalidTokenError(
                f"the access token is invalid ({type(error).__name__})"
            ) from None
        return self._checked(claims)

    def _checked(self, claims: Mapping[str, Any]) -> VerifiedToken:
        issued_at, expires_at = claims["iat"], claims["exp"]
        if not isinstance(issued_at, int) or not isinstance(expires_at, int):
            raise InvalidTokenError("iat and exp must be integers")
        if expires_at - issued_at > self._max_lifetime_s:
            raise InvalidTokenError(f"the access token lives longer than {self._max_lifetime_s} s")
        if issued_at > time.time() + self._leeway_s:
            raise InvalidTokenError("the access token was issued in the future")
        subject, token_id = claims["sub"], claims["jti"]
        scope = claims.get("scope", "")
        cnf = claims["cnf"]
        if not isinstance(subject, str) or not isinstance(token_id, str):
            raise InvalidTokenError("sub and jti must be strings")
        if not isinstance(scope, str):
            raise InvalidTokenError("scope must be a space-separated string")
        if (
            not isinstance(cnf, Mapping)
            or not isinstance(cnf.get("kid"), str)
            or not isinstance(cnf.get("jwk"), Mapping)
        ):
            raise InvalidTokenError("the access token binds no key (cnf.kid and cnf.jwk)")
        try:
            ed25519_public_key(cnf["jwk"])
        except ValueError:
            raise InvalidTokenError("the access token binds an unusable key") from None
        return VerifiedToken(
            client_id=subject,
            scopes=frozenset(scope.split()),
            key_id=cnf["kid"],
            key_jwk=dict(cnf["jwk"]),
            token_id=token_id,
            expires_at=expires_at,
        )


# ---- the Authenticator --------------------------------------------------------------------

ActiveCheck = Callable[[Principal], Awaitable[bool]]


class BearerAuthenticator:
    """`Authorization: Bearer <token>` -> Principal, or 401 `unauthorized`.

    `is_active`, when given, is asked on every request so that a disabled client (or a
    revoked key) is refused at once, not when its token expires.
    """

    def __init__(self, verifier: TokenVerifier, is_active: ActiveCheck | None = None) -> None:
        self._verifier = verifier
        self._is_active = is_active

    async def authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization")
        if header is None:
            error = UnauthorizedError("send Authorization: Bearer <access token>")
            error.headers["WWW-Authenticate"] = "Bearer"
            raise error
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidTokenError("the Authorization header must be Bearer <access token>")
        verified = await self._verifier.verify(token.strip())
        principal = Principal(
            client_id=verified.client_id,
            scopes=verified.scopes,
            key_id=verified.key_id,
            key_jwk=verified.key_jwk,
        )
        if self._is_active is not None and not await self._is_active(principal):
            raise InvalidTokenError("the client or its key is disabled")
        return principal


# ---- RFC 9421 signatures ------------------------------------------------------------------


class _Headers:
    """Read-only header view in wire order, as the library's resolver expects."""

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def __iter__(self) -> Any:
        return iter(dict.fromkeys(name for name, _ in self._fields))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(f.lower() == name.lower() for f, _ in self._fields)


@dataclass(frozen=True, slots=True)
class _Message:
    method: str
    url: str
    headers: _Headers


class _BoundKey(HTTPSignatureKeyResolver):
    def __init__(self, key_id: str, key: Ed25519PublicKey) -> None:
        self._key_id = key_id
        self._key = key

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._key if key_id == self._key_id else None

    def resolve_private_key(self, key_id: str) -> Any:
        raise KeyError("verification only")


class _Verifier(HTTPMessageVerifier):
    # The freshness window is enforced by us (with its own error code) before the library
    # runs; the library's own skew only has to admit our +30 s future allowance.
    max_clock_skew = datetime.timedelta(seconds=CREATED_FUTURE_WINDOW_S)


def _parse_dictionary(value: str, what: str) -> dict[str, Any]:
    if len(value) > MAX_SIGNATURE_HEADER_LENGTH:
        raise InvalidSignatureError(f"{what} is too long")
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise InvalidSignatureError(f"{what} is not a structured dictionary") from None
    if not isinstance(parsed, dict):
        raise InvalidSignatureError(f"{what} is not a structured dictionary")
    return parsed


_INSERT_NONCE = text(
    """
    INSERT INTO platform.seen_nonces (key_id, nonce, expires_at)
    VALUES (:key_id, :nonce, now() + make_interval(secs => :ttl_s))
    ON CONFLICT (key_id, nonce) DO NOTHING
    RETURNING 1
    """
)
_DELETE_EXPIRED_NONCES = text(
    """
    DELETE FROM platform.seen_nonces
    WHERE ctid IN (
        SELECT ctid FROM platform.seen_nonces WHERE expires_at <= now() LIMIT :batch
    )
    """
)


def _header(request: Request, name: str) -> str | None:
    values = request.headers.getlist(name)
    return ", ".join(values) if values else None


class Rfc9421Verifier:
    """Checks the `sig1` RFC 9421 signature of a state-changing request (DESIGN.md).

    Order: presence -> structure and parameters -> freshness -> key binding -> signature
    (library) -> Content-Digest -> nonce single use. The nonce is recorded last, so a
    request that fails any check cannot burn a legitimate client's nonce.
    """

    def __init__(
        self,
        *,
        public_base_url: str,
        sessions: async_sessionmaker[AsyncSession],
        nonce_ttl_s: int = NONCE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`sessions` should be autocommit ones (db.create_autocommit_engine); with
        ordinary sessions the nonce still commits, only with a WAL-flush wait."""
        self._base_url = public_base_url.rstrip("/")
        self._sessions = sessions
        self._nonce_ttl_s = nonce_ttl_s
        self._clock = clock
        self._next_cleanup = 0.0

    def target_uri(self, request: Request) -> str:
        # Never from the Host header: a proxy or a client could make that say anything.
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        uri = self._base_url + path.decode("latin-1")
        return uri + ("?" + query.decode("latin-1") if query else "")

    async def verify(self, request: Request, body: bytes, principal: Principal | None) -> None:
        signature_input = _header(request, "signature-input")
        signature = _header(request, "signature")
        if signature_input is None or signature is None:
            raise SignatureRequiredError(
                "state-changing requests need an RFC 9421 signature (Signature-Input, Signature)"
            )
        inputs = _parse_dictionary(signature_input, "Signature-Input")
        signatures = _parse_dictionary(signature, "Signature")
        if list(inputs) != [SIGNATURE_LABEL] or list(signatures) != [SIGNATURE_LABEL]:
            raise InvalidSignatureError(f"send exactly one signature, labelled {SIGNATURE_LABEL}")
        covered_items, params = inputs[SIGNATURE_LABEL]
        if not isinstance(covered_items, list):
            raise InvalidSignatureError("Signature-Input sig1 must be an inner list")
        covered = self._covered_names(covered_items)
        keyid, nonce = self._check_parameters(params)
        self._check_coverage(request, body, covered)
        self._check_freshness(params)
        if principal is None or principal.key_id is None or principal.key_jwk is None:
            raise KeyNotBoundError("the access token binds no signing key")
        if keyid != principal.key_id:
            raise KeyNotBoundError("the request was signed with a key the token does not bind")
        self._check_signature(request, keyid, principal.key_jwk)
        digest = _header(request, "content-digest")
        if digest is not None:
            self._check_digest(digest, body)
        await self._claim_nonce(keyid, nonce)

    @staticmethod
    def _covered_names(items: list[Any]) -> list[str]:
        names: list[str] = []
        for value, item_params in items:
            if not isinstance(value, str) or item_params:
                raise InvalidSignatureError("covered components must be plain names")
            names.append(value)
        return names

    def _check_parameters(self, params: Mapping[str, Any]) -> tuple[str, str]:
        unknown = set(params) - _ALLOWED_PARAMETERS
        if unknown:
            raise InvalidSignatureError(f"unknown signature parameters: {sorted(unknown)}")
        created, keyid, nonce = params.get("created"), params.get("keyid"), params.get("nonce")
        if type(created) is not int or not isinstance(keyid, str) or not isinstance(nonce, str):
            raise InvalidSignatureError(
                "created, keyid and nonce are required signature parameters"
            )
        if not _NONCE.match(nonce):
            raise InvalidSignatureError("nonce must be 16 to 128 base64url characters")
        if "alg" in params and params["alg"] != SIGNATURE_ALGORITHM:
            raise InvalidSignatureError(f"alg must be {SIGNATURE_ALGORITHM}")
        if "expires" in params:
            expires = params["expires"]
            if type(expires) is not int or expires <= self._clock():
                raise StaleRequestError("the signature has expired")
        return keyid, nonce

    @staticmethod
    def _check_coverage(request: Request, body: bytes, covered: list[str]) -> None:
        required = {"@method", "@target-uri"}
        if body or "content-digest" in request.headers:
            if "content-digest" not in request.headers:
                raise DigestMismatchError("a request with a body needs a Content-Digest header")
            required.add("content-digest")
        if "idempotency-key" in request.headers:
            required.add("idempotency-key")
        missing = required - set(covered)
        if missing:
            raise InvalidSignatureError(f"the signature must cover {sorted(missing)}")

    def _check_freshness(self, params: Mapping[str, Any]) -> None:
        now = self._clock()
        created = int(params["created"])
        if created < now - CREATED_PAST_WINDOW_S or created > now + CREATED_FUTURE_WINDOW_S:
            raise StaleRequestError(
                f"created must lie within [now-{CREATED_PAST_WINDOW_S} s, "
                f"now+{CREATED_FUTURE_WINDOW_S} s]"
            )

    def _check_signature(self, request: Request, keyid: str, jwk: Mapping[str, Any]) -> None:
        try:
            key = ed25519_public_key(jwk)
        except ValueError:
            raise InvalidSignatureError("the bound key is not an Ed25519 key") from None
        message = _Message(
            method=request.method.upper(),
            url=self.target_uri(request),
            headers=_Headers(request.headers.raw),
        )
        verifier = _Verifier(
            signature_algorithm=algorithms.ED25519, key_resolver=_BoundKey(keyid, key)
        )
        try:
            verifier.verify(message, max_age=None, expect_tag=None)
        except InvalidSignature:
            raise InvalidSignatureError("the signature does not verify") from None
        except Exception:  # noqa: BLE001 - any library refusal of hostile input is a 401
            raise InvalidSignatureError("the signature could not be checked") from None

    @staticmethod
    def _check_digest(value: str, body: bytes) -> None:
        members = _parse_dictionary(value, "Content-Digest")
        if "sha-256" not in members:
            raise DigestMismatchError("Content-Digest must carry a sha-256 member")
        try:
            ContentDigest.verify(value, body)
        except InvalidSignature:
            raise DigestMismatchError("the body does not match Content-Digest") from None

    async def _claim_nonce(self, keyid: str, nonce: str) -> None:
        # `sessions` are autocommit with synchronous_commit=off (db.create_autocommit_engine):
        # one round trip, and no wait for the WAL flush. Any effect of this request commits
        # synchronously later, which flushes this record first; a crash before that loses
        # only the nonce of a request that had no effect. The commit below is then a no-op.
        async with self._sessions() as session:
            inserted = await session.execute(
                _INSERT_NONCE, {"key_id": keyid, "nonce": nonce, "ttl_s": self._nonce_ttl_s}
            )
            claimed = inserted.first() is not None
            if time.monotonic() >= self._next_cleanup:
                self._next_cleanup = time.monotonic() + NONCE_CLEANUP_INTERVAL_S
                await delete_expired_nonces(session)
            await session.commit()
        if not claimed:
            raise ReplayedRequestError("this (keyid, nonce) pair was already used")


async def delete_expired_nonces(
    session: AsyncSession, batch_size: int = NONCE_CLEANUP_BATCH
) -> int:
    """Delete up to `batch_size` nonces past their 600 s retention; returns how many went.

    An expired pair can never be accepted again anyway, because its `created` is then far
    outside the freshness window.
    """
    result = await session.execute(
        _DELETE_EXPIRED_NONCES,
        {"batch": batch_size},
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted
