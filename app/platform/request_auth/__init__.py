"""The one verifier of access tokens and RFC 9421 request signatures, shared by every service.

The API and the evidence service both use this package (the evidence service may import
only `app.platform`), so there is exactly one implementation of DESIGN.md's security
profile, one room per job:

- `tokens`: `TokenVerifier` checks an EdDSA access token (iss, aud, exp, iat, cnf).
- `jwks`: Ed25519 JWKs and the issuer's JWKS fetched with a timeout and a bounded cache.
- `bearer`: `BearerAuthenticator` turns `Authorization: Bearer` into a `Principal`.
- `signatures`: `Rfc9421Verifier` checks the HTTP Message Signature and Content-Digest.
- `nonces`: the single use of each `(keyid, nonce)` pair.
- `refusals`: the 401 errors, each with its own code.
"""

from app.platform.request_auth.bearer import ActiveCheck, BearerAuthenticator
from app.platform.request_auth.jwks import (
    JWKS_CACHE_TTL_S,
    JWKS_FETCH_TIMEOUT_S,
    TOKEN_ALGORITHM,
    RemoteJwks,
    ed25519_public_key,
)
from app.platform.request_auth.nonces import NONCE_TTL_S, SeenNonces, delete_expired_nonces
from app.platform.request_auth.refusals import (
    DigestMismatchError,
    InvalidSignatureError,
    InvalidTokenError,
    KeyNotBoundError,
    ReplayedRequestError,
    SignatureRequiredError,
    StaleRequestError,
)
from app.platform.request_auth.signatures import (
    CREATED_FUTURE_WINDOW_S,
    CREATED_PAST_WINDOW_S,
    SIGNATURE_LABEL,
    Rfc9421Verifier,
)
from app.platform.request_auth.tokens import (
    MAX_TOKEN_LIFETIME_S,
    TOKEN_AUDIENCE,
    TokenVerifier,
    VerifiedToken,
)

__all__ = [
    "CREATED_FUTURE_WINDOW_S",
    "CREATED_PAST_WINDOW_S",
    "JWKS_CACHE_TTL_S",
    "JWKS_FETCH_TIMEOUT_S",
    "MAX_TOKEN_LIFETIME_S",
    "NONCE_TTL_S",
    "SIGNATURE_LABEL",
    "TOKEN_ALGORITHM",
    "TOKEN_AUDIENCE",
    "ActiveCheck",
    "BearerAuthenticator",
    "DigestMismatchError",
    "InvalidSignatureError",
    "InvalidTokenError",
    "KeyNotBoundError",
    "RemoteJwks",
    "ReplayedRequestError",
    "Rfc9421Verifier",
    "SeenNonces",
    "SignatureRequiredError",
    "StaleRequestError",
    "TokenVerifier",
    "VerifiedToken",
    "delete_expired_nonces",
    "ed25519_public_key",
]
