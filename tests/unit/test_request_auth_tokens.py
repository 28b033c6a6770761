"""TokenVerifier rules on locally signed tokens (no I/O: a static JWKS)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from app.platform.request_auth import InvalidTokenError, TokenVerifier, VerifiedToken

ISSUER = "https://api.example"
SIGNING_KEY = Ed25519PrivateKey.generate()
CLIENT_KEY = Ed25519PrivateKey.generate()


def _jwk(key: Ed25519PrivateKey, **extra: str) -> dict[str, str]:
    public: dict[str, str] = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    return {**public, **extra}


@dataclass(frozen=True)
class FromNow:
    """A claim time this many seconds from the moment the test runs."""

    seconds: int


VERIFIER = TokenVerifier(issuer=ISSUER, jwks={"keys": [_jwk(SIGNING_KEY, kid="jwt_1")]})


def _token(key: Ed25519PrivateKey = SIGNING_KEY, kid: str = "jwt_1", **changes: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "cli_1",
        "aud": "moneypath",
        "iat": now,
        "exp": now + 300,
        "jti": "tok_1",
        "scope": "ledger:read ledger:write",
        "cnf": {"kid": "key_1", "jwk": _jwk(CLIENT_KEY)},
    }
    claims.update(changes)
    claims = {name: value for name, value in claims.items() if value is not None}
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def _verify(token: str) -> VerifiedToken:
    return asyncio.run(VERIFIER.verify(token))


def test_valid_token_yields_client_scopes_and_bound_key() -> None:
    verified = _verify(_token())
    assert verified.client_id == "cli_1"
    assert verified.scopes == frozenset({"ledger:read", "ledger:write"})
    assert verified.key_id == "key_1"
    assert verified.key_jwk["crv"] == "Ed25519"


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": FromNow(-60)},
        {"exp": FromNow(900)},  # lives longer than 300 s
        {"iat": FromNow(120), "exp": FromNow(400)},  # issued in the future
        {"cnf": None},
        {"cnf": {"kid": "key_1"}},
        {"cnf": {"kid": "key_1", "jwk": {"kty": "RSA", "n": "x", "e": "AQAB"}}},
        {"jti": None},
        {"scope": ["not", "a", "string"]},
    ],
)
def test_token_is_refused_when_a_claim_is_wrong(changes: dict[str, Any]) -> None:
    # Times are resolved when the test runs, not when it is collected: on a loaded machine
    # collection can come long enough before the run for "120 s ahead" to be in the past.
    now = int(time.time())
    resolved = {
        name: now + value.seconds if isinstance(value, FromNow) else value
        for name, value in changes.items()
    }
    with pytest.raises(InvalidTokenError):
        _verify(_token(**resolved))


def test_token_signed_by_unknown_key_or_kid_is_refused() -> None:
    with pytest.raises(InvalidTokenError):
        _verify(_token(key=Ed25519PrivateKey.generate()))
    with pytest.raises(InvalidTokenError):
        _verify(_token(kid="jwt_unknown"))


def test_token_with_another_algorithm_is_refused() -> None:
    forged = jwt.encode({"sub": "cli_1"}, "secret-bytes-long-enough-for-hs256", algorithm="HS256")
    with pytest.raises(InvalidTokenError):
        _verify(forged)
    with pytest.raises(InvalidTokenError):
        _verify("not.a.token")


def test_a_remembered_token_is_refused_when_it_expires_meanwhile() -> None:
    verifier = TokenVerifier(
        issuer=ISSUER, jwks={"keys": [_jwk(SIGNING_KEY, kid="jwt_1")]}, leeway_s=0
    )
    now = int(time.time())
    token = _token(iat=now - 10, exp=now + 1)

    async def twice() -> None:
        assert (await verifier.verify(token)).client_id == "cli_1"
        await asyncio.sleep(now + 1.1 - time.time())
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)

    asyncio.run(twice())


def test_a_remembered_token_is_refused_when_its_signing_key_leaves_the_jwks() -> None:
    published = {"keys": [_jwk(SIGNING_KEY, kid="jwt_1")]}
    current = [published]
    verifier = TokenVerifier(issuer=ISSUER, jwks_source=lambda: current[0])
    token = _token()

    async def twice() -> None:
        assert (await verifier.verify(token)).client_id == "cli_1"
        assert (await verifier.verify(token)).client_id == "cli_1"  # from memory
        current[0] = {"keys": [_jwk(Ed25519PrivateKey.generate(), kid="jwt_2")]}
        with pytest.raises(InvalidTokenError):
            await verifier.verify(token)

    asyncio.run(twice())
