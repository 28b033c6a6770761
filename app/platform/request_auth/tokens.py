"""Access tokens: EdDSA JWTs checked with PyJWT against one of three key sources.

The keys are either held locally (a fixed JWKS, or a callable for the API, which issues
the tokens and rotates its own keys) or fetched from the issuer's JWKS URL with a timeout
and a bounded cache (the evidence service).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.platform.request_auth.jwks import (
    JWKS_CACHE_TTL_S,
    JWKS_FETCH_TIMEOUT_S,
    TOKEN_ALGORITHM,
    RemoteJwks,
    ed25519_public_key,
    keys_by_kid,
)
from app.platform.request_auth.refusals import InvalidTokenError

# Every resource server of the platform (the API, the evidence service) accepts this audience.
TOKEN_AUDIENCE = "moneypath"  # noqa: S105 - an audience name
MAX_TOKEN_LIFETIME_S = 300
MAX_TOKEN_LENGTH = 4096
TOKEN_LEEWAY_S = 5
# Verified tokens remembered per process: a client sends the same token with every request
# until it expires, and its EdDSA check cost about 5 % of a signed transfer's CPU (py-spy,
# issue 16). Bounded; the oldest entry goes first.
VERIFIED_CACHE_SIZE = 4096

KeyLookup = Callable[[str], Awaitable[Ed25519PublicKey | None]]


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    client_id: str
    scopes: frozenset[str]
    key_id: str
    key_jwk: Mapping[str, Any]
    token_id: str
    expires_at: int


class _SourcedKeys:
    """Keys from a callable that returns the issuer's current JWKS (parsed once per JWKS)."""

    def __init__(
        self,
        source: Callable[[], Mapping[str, Any]],
        on_unknown_kid: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self._source = source
        # Called once when a token names a kid we do not know, so a key rotated in by
        # another process is picked up at once (the callee rate-limits).
        self._on_unknown_kid = on_unknown_kid
        self._seen: Mapping[str, Any] | None = None
        self._keys: dict[str, Ed25519PublicKey] = {}

    def _current(self, kid: str) -> Ed25519PublicKey | None:
        current = self._source()
        if current is not self._seen:
            self._keys = keys_by_kid(current)
            self._seen = current
        return self._keys.get(kid)

    async def key(self, kid: str) -> Ed25519PublicKey | None:
        key = self._current(kid)
        if key is None and self._on_unknown_kid is not None:
            await self._on_unknown_kid()
            key = self._current(kid)
        return key


def _fixed_keys(jwks: Mapping[str, Any]) -> KeyLookup:
    keys = keys_by_kid(jwks)

    async def key(kid: str) -> Ed25519PublicKey | None:
        return keys.get(kid)

    return key


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
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime_s = max_lifetime_s
        self._leeway_s = leeway_s
        if jwks is not None and jwks_source is None and jwks_url is None:
            self._key: KeyLookup = _fixed_keys(jwks)
        elif jwks_source is not None and jwks is None and jwks_url is None:
            self._key = _SourcedKeys(jwks_source, on_unknown_kid).key
        elif jwks_url is not None and jwks is None and jwks_source is None:
            remote = RemoteJwks(jwks_url, timeout_s=jwks_timeout_s, cache_ttl_s=jwks_cache_ttl_s)
            self._key = remote.key
        else:
            raise ValueError("give exactly one of jwks, jwks_source, jwks_url")
        # token -> (its claims, the kid that signed it), for `verify`.
        self._verified: dict[str, tuple[VerifiedToken, str]] = {}

    async def verify(self, token: str) -> VerifiedToken:
        """Verify `token` and return its claims. Raises InvalidTokenError.

        A token verified before is answered from memory while it is unexpired and its
        signing key is still one of the issuer's: the same bytes were checked, so only
        time and the key set can have changed. (Whether the client and its key are still
        active is asked on every request, elsewhere.)"""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidTokenError("the access token is missing or too long")
        known = self._verified.get(token)
        if known is not None:
            verified, kid = known
            if time.time() < verified.expires_at + self._leeway_s and await self._key(kid):
                return verified
            del self._verified[token]
        verified, kid = await self._verify_anew(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (verified, kid)
        return verified

    async def _verify_anew(self, token: str) -> tuple[VerifiedToken, str]:
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
        return self._checked(claims), kid

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
