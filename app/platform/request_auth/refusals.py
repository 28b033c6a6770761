"""The 401 refusals of API.md "Auth on /v1/*", each with its own stable code.

The web pipeline counts every one in a metric and writes it to the audit log.
"""

from __future__ import annotations

from app.platform.errors import UnauthorizedError


class InvalidTokenError(UnauthorizedError):
    """Missing, malformed, expired or otherwise unacceptable access token."""

    code = UnauthorizedError.code  # API.md: a bad token is plain `unauthorized`

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'


class SignatureRequiredError(UnauthorizedError):
    title = "Signature required"


class InvalidSignatureError(UnauthorizedError):
    title = "Invalid signature"


class StaleRequestError(UnauthorizedError):
    title = "Stale request"


class DigestMismatchError(UnauthorizedError):
    title = "Content-Digest mismatch"


class ReplayedRequestError(UnauthorizedError):
    title = "Replayed request"


class KeyNotBoundError(UnauthorizedError):
    title = "Key not bound to the token"
