"""The token signing keys: Ed25519 keys kept in Vault KV, loaded at start-up, signed locally.

Why KV and not transit signing: a transit `sign` is one HTTP round trip to Vault per
token, on the token endpoint's hot path, and makes Vault's availability a condition of
issuing every token. Keeping the key in KV costs one read at start-up (and one per reload
interval), and signing is a local Ed25519 operation of tens of microseconds. The measured
figures are in loadtests/token_signing_bench.py. The price is that the private key lives in
the API's memory; the key is never logged, never returned, and rotated with
`moneypath keys rotate-jwt`.

The KV secret holds the current key and the previous one. JWKS publishes both, so a
token signed with the previous `kid` stays valid until it expires (at most 300 s later);
rotate no more often than that.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.identity import domain
from app.platform.errors import InvariantViolation
from app.platform.request_auth import MAX_TOKEN_LIFETIME_S, TOKEN_ALGORITHM
from app.platform.vault import Vault

SIGNING_KEY_SECRET = "moneypath/jwt-signing"  # noqa: S105 - a Vault path
KEPT_SIGNING_KEYS = 2  # current and previous
RELOAD_INTERVAL_S = 30
UNKNOWN_KID_RELOAD_S = 5


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey = field(repr=False)
    created_at: str

    def public_jwk(self) -> dict[str, str]:
        jwk = domain.jwk_of(self.private_key.public_key())
        return {**jwk, "kid": self.kid, "alg": TOKEN_ALGORITHM, "use": "sig"}


def _new_key_entry() -> dict[str, str]:
    private_key = Ed25519PrivateKey.generate()
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "kid": "jwt_" + secrets.token_hex(8),
        "private_pem": pem,
        "created_at": datetime.now(UTC).isoformat(),
    }


def _parse(entries: Any) -> list[SigningKey]:
    keys: list[SigningKey] = []
    if not isinstance(entries, list):
        return keys
    for entry in entries[:KEPT_SIGNING_KEYS]:
        private_key = serialization.load_pem_private_key(entry["private_pem"].encode(), None)
        if not isinstance(private_key, Ed25519PrivateKey):
            raise InvariantViolation("jwt_signing_key", "the stored signing key is not Ed25519")
        keys.append(SigningKey(entry["kid"], private_key, entry["created_at"]))
    return keys


def ensure_signing_key(vault: Vault) -> None:
    """Create the first signing key if Vault has none. Safe to run twice."""
    secret = vault.read_secret(SIGNING_KEY_SECRET)
    if secret is None or not secret.get("keys"):
        vault.write_secret(SIGNING_KEY_SECRET, {"keys": [_new_key_entry()]})


def rotate_signing_key(vault: Vault) -> str:
    """Make a new current key; the old current becomes previous. Returns the new kid."""
    secret = vault.read_secret(SIGNING_KEY_SECRET) or {}
    entries = list(secret.get("keys") or [])
    fresh = _new_key_entry()
    vault.write_secret(SIGNING_KEY_SECRET, {"keys": [fresh, *entries][:KEPT_SIGNING_KEYS]})
    return fresh["kid"]


class TokenIssuer:
    """Signs access tokens with the current key and publishes current + previous as JWKS."""

    def __init__(
        self,
        vault: Vault,
        *,
        issuer: str,
        audience: str,
        lifetime_s: int = MAX_TOKEN_LIFETIME_S,
        reload_interval_s: float = RELOAD_INTERVAL_S,
    ) -> None:
        if not 1 <= lifetime_s <= MAX_TOKEN_LIFETIME_S:
            raise ValueError(f"token lifetime must be 1..{MAX_TOKEN_LIFETIME_S} s")
        self._vault = vault
        self.issuer = issuer
        self.audience = audience
        self.lifetime_s = lifetime_s
        self._reload_interval_s = reload_interval_s
        self._keys: list[SigningKey] = []
        self._jwks: dict[str, Any] = {"keys": []}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def load(self) -> None:
        """Read the keys from Vault now. Raises VaultUnavailableError."""
        secret = self._vault.read_secret(SIGNING_KEY_SECRET)
        keys = _parse((secret or {}).get("keys"))
        if not keys:
            raise InvariantViolation("jwt_signing_key", f"Vault has no kv/{SIGNING_KEY_SECRET}")
        with self._lock:
            self._keys = keys
            # A new object on every load: TokenVerifier notices the change by identity.
            self._jwks = {"keys": [key.public_jwk() for key in keys]}
            self._loaded_at = time.monotonic()

    async def refresh_if_due(self) -> None:
        """Pick up a rotation done by another process, at most every reload interval."""
        if time.monotonic() - self._loaded_at >= self._reload_interval_s:
            self._loaded_at = time.monotonic()
            await asyncio.to_thread(self.load)

    async def refresh_for_unknown_kid(self) -> None:
        """A token names a kid we lack: perhaps another process rotated. Reload, but at
        most every UNKNOWN_KID_RELOAD_S, so made-up kids cannot flood Vault."""
        if time.monotonic() - self._loaded_at >= UNKNOWN_KID_RELOAD_S:
            self._loaded_at = time.monotonic()
            await asyncio.to_thread(self.load)

    def jwks(self) -> Mapping[str, Any]:
        return self._jwks

    @property
    def current_kid(self) -> str:
        return self._keys[0].kid

    def issue(
        self, *, client_id: str, scopes: tuple[str, ...], key_id: str, public_jwk: Mapping[str, str]
    ) -> str:
        current = self._keys[0]
        claims = domain.token_claims(
            issuer=self.issuer,
            audience=self.audience,
            client_id=client_id,
            scopes=scopes,
            key_id=key_id,
            public_jwk=public_jwk,
            issued_at=int(time.time()),
            lifetime_s=self.lifetime_s,
            token_id="tok_" + secrets.token_hex(12),
        )
        return jwt.encode(
            claims,
            current.private_key,
            algorithm=TOKEN_ALGORITHM,
            headers={"kid": current.kid, "typ": "at+jwt"},
        )
