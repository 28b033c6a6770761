"""Pure identity rules: scopes, secret hashing, public keys, token claims."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from app.identity import domain


def test_scopes_are_deduplicated_and_sorted_when_known() -> None:
    assert domain.check_scopes(["ledger:read", "kyc:write", "ledger:read"]) == (
        "kyc:write",
        "ledger:read",
    )


@pytest.mark.parametrize("scopes", [["god:mode"], [], ["ledger:read", "LEDGER:READ"]])
def test_scopes_are_refused_when_unknown_or_empty(scopes: list[str]) -> None:
    with pytest.raises(domain.UnknownScopeError):
        domain.check_scopes(scopes)


def test_requested_scopes_are_the_narrowest_subset_or_none_when_exceeding() -> None:
    granted = ("ledger:read", "ledger:write")
    assert domain.requested_scopes(None, granted) == granted
    assert domain.requested_scopes("ledger:read", granted) == ("ledger:read",)
    assert domain.requested_scopes("ledger:read clients:admin", granted) is None


def test_secret_hash_matches_only_the_secret_and_is_salted() -> None:
    first, second = domain.hash_secret("s3cret"), domain.hash_secret("s3cret")
    assert first != second
    assert first.startswith("scrypt$")
    assert "s3cret" not in first
    assert domain.secret_matches("s3cret", first)
    assert not domain.secret_matches("s3cret!", first)
    assert not domain.secret_matches("anything", domain.DUMMY_SECRET_HASH)
    assert not domain.secret_matches("anything", "md5$abc")


def test_pem_and_jwk_give_the_same_public_jwk() -> None:
    key = Ed25519PrivateKey.generate()
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    jwk = domain.public_jwk_from_pem(pem)
    assert jwk == domain.check_public_jwk({**jwk, "kid": "ignored"})


def test_non_ed25519_or_private_keys_are_refused() -> None:
    rsa_pem = (
        generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(domain.InvalidPublicKeyError):
        domain.public_jwk_from_pem(rsa_pem)
    with pytest.raises(domain.InvalidPublicKeyError):
        domain.check_public_jwk({"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "AA"})
    with pytest.raises(domain.InvalidPublicKeyError):
        domain.check_public_jwk({"kty": "EC", "crv": "P-256", "x": "AA"})


def test_token_claims_bind_the_key_and_live_as_long_as_asked() -> None:
    claims = domain.token_claims(
        issuer="https://api",
        audience="moneypath",
        client_id="cli_1",
        scopes=("a", "b"),
        key_id="key_1",
        public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "x"},
        issued_at=1000,
        lifetime_s=300,
        token_id="tok_1",
    )
    assert claims["exp"] - claims["iat"] == 300
    assert claims["scope"] == "a b"
    assert claims["cnf"] == {"kid": "key_1", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "x"}}
