"""The `Authenticator` every service uses: `Authorization: Bearer <token>` -> Principal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from app.platform.errors import UnauthorizedError
from app.platform.request_auth.refusals import InvalidTokenError
from app.platform.request_auth.tokens import TokenVerifier
from app.platform.web.declarations import Principal

ActiveCheck = Callable[[Principal], Awaitable[bool]]


class BearerAuthenticator:
    """`Authorization: Bearer <token>` -> Principal, or 401 `unauthorized`.

    The Principal carries the key the token binds (RFC 7800 `cnf`). `is_active`, when
    given, is asked on every request so that a disabled client (or a revoked key) is
    refused at once, not when its token expires.
    """

    def __init__(self, verifier: TokenVerifier, is_active: ActiveCheck | None = None) -> None:
        self._verifier = verifier
        self._is_active = is_active

    async def authenticate(self, request: Request, *, check_active: bool = True) -> Principal:
        """`check_active=False` only when the caller checks `is_active` itself before the
        request has any effect (the signature verifier's admission, in the pipeline)."""
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
        if check_active and self._is_active is not None and not await self._is_active(principal):
            raise InvalidTokenError("the client or its key is disabled")
        return principal
