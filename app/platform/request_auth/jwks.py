"""Ed25519 public keys from JWKs, and the issuer's JWKS fetched over HTTP with a cache."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Mapping
from typing import Any

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

log = structlog.get_logger("moneypath.auth")

TOKEN_ALGORITHM = "EdDSA"  # noqa: S105 - an algorithm name
JWKS_FETCH_TIMEOUT_S = 2.0
JWKS_CACHE_TTL_S = 300
JWKS_MIN_REFRESH_INTERVAL_S = 10
JWKS_MAX_KEYS = 16
PUBLIC_KEY_CACHE_SIZE = 4096
# An Ed25519 key is 32 bytes, 43 base64url characters; anything much longer is refused
# before it is decoded or cached.
MAX_JWK_X_LENGTH = 64


def ed25519_public_key(jwk: Mapping[str, Any]) -> Ed25519PublicKey:
    """Load an Ed25519 public JWK (OKP). Raises ValueError for anything else."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
        raise ValueError("expected a public Ed25519 JWK (kty OKP, crv Ed25519)")
    x = jwk.get("x")
    if not isinstance(x, str) or len(x) > MAX_JWK_X_LENGTH:
        raise ValueError("not a usable JWK: its x is missing or too long")
    alg = jwk.get("alg")
    if alg is not None and not isinstance(alg, str):
        raise ValueError("not a usable JWK: its alg is not a string")
    return _okp_key(x, alg)


# Every signed request loads the key its token binds; a public key is public data, so the
# loaded keys are kept (bounded) instead of parsing the JWK each time.
@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE_SIZE)
def _okp_key(x: str, alg: str | None) -> Ed25519PublicKey:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x} | ({"alg": alg} if alg is not None else {})
    try:
        key = jwt.PyJWK(jwk, algorithm=TOKEN_ALGORITHM).key
    except jwt.PyJWTError as error:
        raise ValueError(f"not a usable JWK: {type(error).__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("expected a public Ed25519 JWK")
    return key


def keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The usable Ed25519 keys of a JWKS (at most JWKS_MAX_KEYS); others are skipped."""
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
            self._keys = keys_by_kid(document)
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
