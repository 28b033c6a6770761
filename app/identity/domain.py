"""Pure identity rules: scopes, client secrets, public keys, token claims. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from app.platform.errors import ValidationError

# DESIGN.md's scopes, plus the risk and reconciliation scopes that API.md uses.
KNOWN_SCOPES = frozenset(
    {
        "payments:write",
        "payments:read",
        "ledger:write",
        "ledger:read",
        "refunds:write",
        "payouts:write",
        "kyc:write",
        "clients:admin",
        "evidence:write",
        "evidence:read",
        "risk:read",
        "risk:write",
        "recon:read",
        "recon:write",
    }
)
MAX_SCOPES = len(KNOWN_SCOPES)
MAX_NAME_LENGTH = 200
MAX_PEM_LENGTH = 4096

# scrypt with n=2**14, r=8, p=1 costs ~16 MiB and tens of milliseconds per guess: slow for
# an attacker holding the table, still fine for a token endpoint whose tokens live 300 s.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_HASH_BYTES = 32
SECRET_PREFIX = "mps_"  # noqa: S105 - a prefix, not a secret


class UnknownScopeError(ValidationError):
    title = "Unknown scope"


class InvalidPublicKeyError(ValidationError):
    title = "Invalid public key"


# The shapes ids are issued in (with room to spare). Anything else never reaches SQL or
# the audit log: it cannot name a client or key, so it is refused by its shape alone.
CLIENT_ID_PATTERN = re.compile(r"^cli_[A-Za-z0-9]{1,60}$")
KEY_ID_PATTERN = re.compile(r"^key_[A-Za-z0-9]{1,60}$")


def is_client_id(value: str) -> bool:
    return CLIENT_ID_PATTERN.fullmatch(value) is not None


def is_key_id(value: str) -> bool:
    return KEY_ID_PATTERN.fullmatch(value) is not None


def new_client_id() -> str:
    return "cli_" + secrets.token_hex(12)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(10)


def new_client_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Deduplicate and sort `scopes`; raise UnknownScopeError for one we do not know."""
    chosen = sorted(set(scopes))
    unknown = [scope for scope in chosen if scope not in KNOWN_SCOPES]
    if unknown:
        raise UnknownScopeError(f"unknown scopes: {', '.join(unknown[:5])}")
    if not chosen:
        raise UnknownScopeError("a client needs at least one scope")
    return tuple(chosen)


def check_name(name: str) -> str:
    cleaned = name.strip()
    if not 1 <= len(cleaned) <= MAX_NAME_LENGTH or not cleaned.isprintable():
        raise ValidationError(f"name must be 1 to {MAX_NAME_LENGTH} printable characters")
    return cleaned


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_HASH_BYTES
    )
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )


def secret_matches(secret: str, stored: str) -> bool:
    """Constant-time check of `secret` against a `hash_secret` value."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


# A fixed hash to compare against when the client id is unknown, so that an unknown id
# costs as much time as a wrong secret and cannot be told apart by timing.
_ZERO_SALT = "AAAAAAAAAAAAAAAAAAAAAA=="
_ZERO_HASH = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
DUMMY_SECRET_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_ZERO_SALT}${_ZERO_HASH}"


def public_jwk_from_pem(pem: str) -> dict[str, str]:
    """An Ed25519 public key in PEM (SubjectPublicKeyInfo) as a public JWK."""
    if len(pem) > MAX_PEM_LENGTH:
        raise InvalidPublicKeyError("the PEM is too long")
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        raise InvalidPublicKeyError("public_key_pem is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidPublicKeyError("only Ed25519 public keys are accepted")
    return jwk_of(key)


def jwk_of(key: Ed25519PublicKey) -> dict[str, str]:
    jwk: dict[str, str] = json.loads(OKPAlgorithm.to_jwk(key))
    return {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]}


def check_public_jwk(jwk: Mapping[str, Any]) -> dict[str, str]:
    """Accept only a public Ed25519 JWK; return its canonical form (kty, crv, x)."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise InvalidPublicKeyError("public_jwk must be an Ed25519 key (kty OKP, crv Ed25519)")
    if "d" in jwk:
        raise InvalidPublicKeyError("public_jwk contains a private key: send only the public part")
    x = jwk.get("x")
    if not isinstance(x, str):
        raise InvalidPublicKeyError("public_jwk needs x")
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidPublicKeyError("public_jwk x is not an Ed25519 public key") from None
    return jwk_of(key)


def key_is_active(not_before: datetime, not_after: datetime | None, now: datetime) -> bool:
    return not_before <= now and (not_after is None or now < not_after)


def requested_scopes(raw: str | None, granted: Iterable[str]) -> tuple[str, ...] | None:
    """The token's scopes: the narrowest set asked for, or all when none is asked.

    Returns None when the request asks for a scope the client does not hold.
    """
    allowed = set(granted)
    if raw is None or raw.strip() == "":
        return tuple(sorted(allowed))
    asked = set(raw.split())
    if not asked <= allowed:
        return None
    return tuple(sorted(asked))


def token_claims(
    *,
    issuer: str,
    audience: str,
    client_id: str,
    scopes: Iterable[str],
    key_id: str,
    public_jwk: Mapping[str, str],
    issued_at: int,
    lifetime_s: int,
    token_id: str,
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "sub": client_id,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + lifetime_s,
        "jti": token_id,
        "client_id": client_id,
        "scope": " ".join(scopes),
        "cnf": {"kid": key_id, "jwk": dict(public_jwk)},
    }


# ---- data objects (re-exported by api.py) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientKey:
    key_id: str
    public_jwk: dict[str, str]
    created_at: datetime
    not_before: datetime
    not_after: datetime | None


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    name: str
    scopes: tuple[str, ...]
    disabled: bool
    owner: str | None
    created_at: datetime
    keys: tuple[ClientKey, ...]


@dataclass(frozen=True, slots=True)
class CreatedClient:
    """A new client. `client_secret` exists only here: it is stored as a scrypt hash."""

    client: Client
    client_secret: str = field(repr=False)
    key_id: str
