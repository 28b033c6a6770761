"""The 401 refusals of API.md "Auth on /v1/*", each with its own stable code.

The web pipeline counts every one in a metric and writes it to the audit log.
"""

from __future__ import annotations

from app.platform.errors import UnauthorizedError


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
